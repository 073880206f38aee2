"""The suite's dataset, resolved once by the driver, so every trial on every node uses the same one.

Resolving in each trial would go wrong on a cluster: Ray Tune runs each trial in its own working
directory (a relative `data.root` fails there), and `source: auto` looks at what each node happens
to have (one suite could mix the official batches and the JPEG copy). So the driver resolves the
source and an absolute root once, loads CIFAR-10's arrays (the Ray executor puts them in the object
store, once, for every trial on a node to share) and fingerprints the data; a resumed run whose
data changed is refused (`preflight.check_resumable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark import DataError
from benchmark.data import CifarData, load_cifar10
from benchmark.data.imagenet import folder_fingerprint
from benchmark.data.imagenet_beton import check_imagenet_betons
from benchmark.suite.spec import DataSpec, Suite


@dataclass(frozen=True, eq=False)
class SuiteData:
    spec: DataSpec           # concrete source and absolute root: what every trial is given
    fingerprint: str         # names the exact data, recorded in every trial's row
    arrays: CifarData | None  # CIFAR-10 in memory (None for an ImageNet folder, read on each node)


def resolve_data(suite: Suite, cwd: Path) -> SuiteData:
    """Resolve `suite.data` against `cwd` (where the user ran the command); a DataError names what is missing."""
    spec = suite.data
    root = Path(spec.root).expanduser() if spec.root else None
    if root is not None and not root.is_absolute():
        root = (cwd / root).resolve()
    where = f"data.source={spec.source}" + (f", data.root={spec.root}" if spec.root else "")
    try:
        if spec.dataset == "cifar10":
            arrays = load_cifar10(source=spec.source, split=spec.split, root=root)
            resolved = spec.model_copy(update={"source": arrays.source,
                                               "root": None if arrays.source == "synthetic" else arrays.location})
            # The fingerprint names what the trials train and test on: the subsets when the suite has them.
            trained = arrays.subset(spec.train_subset, spec.eval_subset)
            return SuiteData(resolved, f"{arrays.source}:{cifar_fingerprint(trained)}", arrays)
        assert root is not None  # the schema requires data.root for imagenet
        fingerprint = folder_fingerprint(root)
        if suite.loader == "ffcv":  # its betons were written from this tree as it is now
            check_imagenet_betons(root, fingerprint)
        return SuiteData(spec.model_copy(update={"root": str(root)}), f"folder:{fingerprint}", None)
    except DataError as exc:
        raise DataError(f"{where}: {exc} (in a suite: data.root or --source)") from None


def cifar_fingerprint(data: CifarData) -> str:
    from benchmark.data.beton import data_fingerprint  # the same hash names the FFCV betons written from them

    return data_fingerprint(data)


def check_node_copy(spec: DataSpec, fingerprint: str, node: str) -> None:
    """An ImageNet folder is read from each node's own disk (CIFAR-10's arrays travel from the
    driver): a trial checks that its node's copy is the one the driver fingerprinted, so that a
    different or partial copy never trains under the driver's fingerprint. A one-line DataError
    names the node and the folder otherwise."""
    if spec.dataset != "imagenet" or not fingerprint.startswith("folder:"):
        return
    try:
        here = folder_fingerprint(Path(str(spec.root)))
    except DataError as exc:
        raise DataError(f"node {node}: {exc}") from None
    if f"folder:{here}" != fingerprint:
        raise DataError(f"node {node}: the ImageNet folder {spec.root} there is not the driver's (fingerprint {here}, "
                        f"the driver's {fingerprint.removeprefix('folder:')}); give every node the same copy")
