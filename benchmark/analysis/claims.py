"""The paper's claims as data: read ``benchmark/analysis/reference/claims.yaml`` (or a user's file) and check it.

A claim names nets (the report's variant labels, ``model[-A|-B|-C][-preact]``), a metric, a direction
and when it can be judged; ``benchmark.analysis.verdicts`` judges it against a results folder. The
file's schema is described at its top. Every mistake in a claims file is one ``ClaimsError`` line
naming the file, the claim and the key or value, and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from benchmark import ClaimsError

# A claim's metric -> (the metrics.csv column, the runs.csv final column); layer_response_std is
# read from results/<suite>/analysis/layer_responses.csv instead (Figure 7, `analyze`).
METRICS: dict[str, tuple[str, str] | None] = {
    "train_error": ("train_error", "final_train_error"),
    "test_error": ("eval_error", "final_eval_error"),
    "test_top5_error": ("eval_top5_error", "final_eval_top5_error"),
    "layer_response_std": None,
}
DIRECTIONS = ("increasing", "decreasing")
JUDGED = ("course", "final")
DATASETS = {"cifar10": "cifar", "imagenet": "imagenet"}  # dataset -> the registry's model family
KEYS = ("id", "statement", "cites", "dataset", "metric", "direction", "judged", "chains", "support")
_VARIANT = re.compile(r"^(?P<model>[a-z]+[0-9]+)(?:-(?P<shortcut>[ABC]))?(?P<preact>-preact)?$")


@dataclass(frozen=True)
class Claim:
    """One finding of the paper: along each chain of nets, ``metric`` goes in ``direction``."""

    id: str
    statement: str
    cites: str
    dataset: str
    metric: str
    direction: str
    judged: str  # "course": at the iterations reached; "final": needs the paper's whole schedule
    chains: tuple[tuple[str, ...], ...]
    support: str

    @property
    def sign(self) -> int:
        """+1 when the metric should rise from the first net of a pair to the second, -1 when fall."""
        return 1 if self.direction == "increasing" else -1

    def pairs(self, present: Collection[str]) -> list[tuple[str, str]]:
        """The comparisons the nets in ``present`` allow: consecutive nets of each chain among them,
        in chain order (plain20 -> plain56 when a suite holds only those two of 20/32/44/56)."""
        found: list[tuple[str, str]] = []
        for chain in self.chains:
            held = [net for net in chain if net in present]
            found += [pair for pair in zip(held, held[1:]) if pair not in found]
        return found


def packaged_claims_path() -> Path:
    return Path(str(resources.files("benchmark.analysis.reference").joinpath("claims.yaml")))


def load_claims(path: str | Path | None = None) -> tuple[Claim, ...]:
    """The claims of ``path`` (default: the packaged ``claims.yaml``), checked against the schema.

    A user's file also has its nets checked against the model registry (``check_models``). The
    packaged file is checked that way by the tests instead: the registry imports torch, about a
    second that every report would pay otherwise.
    """
    source = Path(path) if path is not None else packaged_claims_path()
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClaimsError(f"claims file {source}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ClaimsError(f"claims file {source}: not valid YAML ({first})") from None
    if not isinstance(raw, dict) or set(raw) != {"claims"} or not isinstance(raw["claims"], list):
        raise ClaimsError(f"claims file {source}: expected a mapping with one key, 'claims', holding a list")
    claims = tuple(_claim(entry, index, source) for index, entry in enumerate(raw["claims"]))
    ids = [claim.id for claim in claims]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise ClaimsError(f"claims file {source}: claim id {duplicate!r} appears twice")
    if path is not None:
        check_models(claims, source)
    return claims


def _claim(entry: object, index: int, source: Path) -> Claim:
    where = f"claims file {source}: claim {index + 1}"
    if not isinstance(entry, dict):
        raise ClaimsError(f"{where}: expected a mapping with keys {', '.join(KEYS)}")
    if isinstance(entry.get("id"), str):
        where = f"claims file {source}: claim {entry['id']!r}"
    unknown = [key for key in entry if key not in KEYS]
    if unknown:
        raise ClaimsError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(KEYS)}")
    missing = [key for key in KEYS if key not in entry]
    if missing:
        raise ClaimsError(f"{where}: missing key {missing[0]!r}")
    for key in ("id", "statement", "cites", "support"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ClaimsError(f"{where}: {key} must be a non-empty string")
    for key, allowed in (("dataset", tuple(DATASETS)), ("metric", tuple(METRICS)), ("direction", DIRECTIONS),
                         ("judged", JUDGED)):
        if entry[key] not in allowed:
            raise ClaimsError(f"{where}: unknown {key} {entry[key]!r}; expected one of {', '.join(allowed)}")
    chains = entry["chains"]
    if (not isinstance(chains, list) or not chains
            or not all(isinstance(c, list) and len(c) >= 2 and all(isinstance(n, str) for n in c) for c in chains)):
        raise ClaimsError(f"{where}: chains must be a list of lists of at least two net names")
    for net in (net for chain in chains for net in chain):
        match = _VARIANT.match(net)
        if match is None:
            raise ClaimsError(f"{where}: net {net!r} is not of the form model[-A|-B|-C][-preact], e.g. resnet56-A")
        if entry["metric"] == "layer_response_std" and (match["shortcut"] or match["preact"]):
            raise ClaimsError(f"{where}: net {net!r}: layer_response_std names models as `analyze` does "
                              f"(e.g. {match['model']}), without an option")
    return Claim(id=entry["id"], statement=entry["statement"], cites=entry["cites"], dataset=entry["dataset"],
                 metric=entry["metric"], direction=entry["direction"], judged=entry["judged"],
                 chains=tuple(tuple(chain) for chain in chains), support=entry["support"])


def check_models(claims: Iterable[Claim], source: str | Path) -> None:
    """Every net of every claim is a registered model of the claim's dataset; residual nets name
    their shortcut option and plain nets none (else a claim would silently never match a trial)."""
    from benchmark.models import list_models, model_info  # torch: see load_claims

    known = set(list_models())
    for claim in claims:
        for net in (net for chain in claim.chains for net in chain):
            match = _VARIANT.match(net)
            assert match is not None  # load_claims checked the form
            where = f"claims file {source}: claim {claim.id!r}"
            model = match["model"]
            if model not in known:
                raise ClaimsError(f"{where}: unknown model {model!r} (in {net!r}); expected a registered model "
                                  "(python -m benchmark list)")
            info = model_info(model)
            if info.family != DATASETS[claim.dataset]:
                raise ClaimsError(f"{where}: model {model!r} is a {info.family} net, the claim is about {claim.dataset}")
            if claim.metric == "layer_response_std":
                continue
            if info.kind == "residual" and not match["shortcut"]:
                raise ClaimsError(f"{where}: residual net {net!r} needs its shortcut option, e.g. {model}-A")
            if info.kind == "plain" and match["shortcut"]:
                raise ClaimsError(f"{where}: plain net {net!r} has no shortcut option; write {model}")
