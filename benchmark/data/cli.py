"""``python -m benchmark data ...``: prepare (resolve, download or decode and cache) CIFAR-10, and
write FFCV .beton files. Parses and dispatches only; the work is in the data modules."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark import DataError
from benchmark.data import jpeg_npz
from benchmark.data.cifar import SOURCES, SPLITS, load_cifar10
from benchmark.data.imagenet import TRAIN_SCALE
from benchmark.hardware import default_cache_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare datasets and write FFCV .beton files")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data.set_defaults(func=PrintHelp(data))

    prepare = commands.add_parser("prepare", help="resolve CIFAR-10, download or decode and cache it")
    _source_arguments(prepare)
    prepare.set_defaults(func=run_prepare)

    beton = commands.add_parser("write-beton", help="write the train/eval .beton files of the ffcv loader "
                                "(CIFAR-10, or an ImageNet folder with --dataset imagenet)")
    beton.add_argument("--dataset", choices=("cifar10", "imagenet"), default="cifar10")
    _source_arguments(beton)
    beton.add_argument("--out", type=Path, default=None,
                       help="output folder (required for cifar10; imagenet: default ROOT/ffcv, where the loader reads)")
    beton.add_argument("--fields", choices=("raw", "jpeg"), default=None,
                       help="raw pixels (lossless; cifar10's default) or JPEG (imagenet's default)")
    beton.add_argument("--jpeg-quality", type=int, default=90, help="imagenet: JPEG quality of the stored images")
    beton.add_argument("--max-shorter-side", type=int, default=TRAIN_SCALE[1],
                       help="imagenet: shrink images whose shorter side is longer (px; 0 keeps them whole); "
                            "480 is the top of the paper's scale augmentation")
    beton.add_argument("--workers", type=int, default=None, help="writer processes (default: all cores)")
    beton.set_defaults(func=run_write_beton)

    sample = commands.add_parser("sample-imagenet", help="write a small generated ImageNet-shaped folder (train/ and "
                                 "val/ of photo-like JPEGs) to try the ImageNet path on any machine")
    sample.add_argument("--root", type=Path, required=True, help="the folder to create (must not exist)")
    sample.add_argument("--classes", type=int, default=4)
    sample.add_argument("--train-per-class", type=int, default=16)
    sample.add_argument("--val", type=int, default=16, help="validation images in all")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=run_sample_imagenet)


class PrintHelp:
    """Print the ``data`` parser's help when no data sub-command is given."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def __call__(self, args: argparse.Namespace) -> int:
        self.parser.print_help()
        return 2


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=SOURCES, default="auto")
    parser.add_argument("--split", choices=SPLITS, default="train50k")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder with cifar-10-batches-py, or the JPEG npz file (imagenet: train/ and val/)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"decoded-array cache (default {default_cache_dir()})")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data and 45k/5k split seed")
    parser.add_argument("--synthetic-size", type=int, default=2000)
    parser.add_argument("--no-download", action="store_true", help="never download the official batches")


def _load(args: argparse.Namespace):
    return load_cifar10(args.source, args.split, root=args.root, seed=args.seed, cache_dir=args.cache_dir,
                        synthetic_size=args.synthetic_size, download=not args.no_download)


def run_prepare(args: argparse.Namespace) -> int:
    data = _load(args)
    print(f"source: {data.source} (asked for {args.source})")
    print(f"from: {data.location}")
    if data.source == "jpeg75":
        print(f"decoded cache: {args.cache_dir or default_cache_dir()}")
        print("note: JPEG quality 75 copy of CIFAR-10 (lossy); results on it must say so")
    print(f"split: {data.split}: train {data.x_train.shape} / {data.eval_split} {data.x_eval.shape}")
    means = data.x_train.reshape(-1, 3).mean(axis=0)
    print("train per-channel mean (0-255): " + " / ".join(f"{m:.2f}" for m in means))
    return 0


def run_write_beton(args: argparse.Namespace) -> int:
    if args.dataset == "imagenet":
        return _write_imagenet_betons(args)
    from benchmark.data.beton import write_cifar_betons

    if args.out is None:
        raise DataError("write-beton: --out is required for cifar10 (the folder to write the .beton files to)")
    fields = args.fields or "raw"
    data = _load(args)
    train, evaluation = write_cifar_betons(data, args.out, fields=fields, num_workers=args.workers, overwrite=True)
    print(f"source: {data.source} ({data.location}), split {data.split}, fields {fields}")
    print(f"train: {train}")
    print(f"{data.eval_split}: {evaluation}")
    return 0


def run_sample_imagenet(args: argparse.Namespace) -> int:
    from benchmark.data.sample_imagenet import write_sample

    if args.root.exists():
        raise DataError(f"sample-imagenet: {args.root} exists; give a new folder")
    if min(args.classes, args.train_per_class, args.val) < 1:
        raise DataError("sample-imagenet: --classes, --train-per-class and --val must be at least 1")
    try:
        files, size = write_sample(args.root, args.classes, args.train_per_class, args.val, args.seed)
    except BaseException:
        import shutil

        shutil.rmtree(args.root, ignore_errors=True)  # nothing half-written is left behind
        raise
    print(f"{args.root}: {files} JPEGs ({size / 1e6:.1f} MB), {args.classes} classes; next: python -m benchmark "
          f"data write-beton --dataset imagenet --root {args.root}")
    return 0


def _write_imagenet_betons(args: argparse.Namespace) -> int:
    from benchmark.data.imagenet_beton import write_imagenet_betons

    if args.root is None:
        raise DataError("write-beton --dataset imagenet: --root is required (the folder holding train/ and val/)")
    paths = write_imagenet_betons(args.root, args.out, fields=args.fields or "jpeg", jpeg_quality=args.jpeg_quality,
                                  max_shorter_side=args.max_shorter_side, num_workers=args.workers)
    for name, path in zip(("train", "val"), paths):
        print(f"{name}: {path} ({path.stat().st_size / 1e6:,.1f} MB)")
    return 0
