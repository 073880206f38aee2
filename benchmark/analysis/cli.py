"""The ``evaluate`` sub-command: parse, score the weights, print them beside the paper's numbers,
append the row to results/evaluations.csv."""

from __future__ import annotations

import argparse
from pathlib import Path


def _evaluate(args: argparse.Namespace) -> int:
    from benchmark.analysis.evaluation import EvaluationRequest, evaluate_weights
    from benchmark.results.tables import append_evaluation

    given = (("shortcut", args.shortcut), ("option_a_padding", args.option_a_padding),
             ("bottleneck_stride", args.bottleneck_stride))
    request = EvaluationRequest(
        model=args.model, weights=args.weights, dataset=args.dataset, source=args.source, root=args.root,
        crops=args.crops, device=args.device, normalisation=args.normalisation,
        options=tuple((key, value) for key, value in given if value is not None), precision=args.precision,
        batch_size=args.batch_size, workers=args.workers,
    )
    result = evaluate_weights(request)
    row = result.row
    append_evaluation(args.out, row)  # only once everything has worked: an error appends nothing
    options = ", ".join(f"{key} {row[key]}" for key in ("shortcut", "option_a_padding", "bottleneck_stride") if row[key])
    print(f"{row['model']}{f' ({options})' if options else ''}: {row['weights']} "
          f"({row['weights_format']}{', ' + row['weights_layout'] if row['weights_layout'] else ''}, "
          f"sha256 {row['weights_sha256'][:12]})")
    mean = f", mean image from the {row['mean_image']}" if row["mean_image"] else ""
    print(f"scored on {row['dataset']} {row['eval_split']} ({row['data_source']}, {row['images']:,} images, "
          f"{row['crops']} crop{'s' if row['crops'] > 1 else ''}), input {row['normalisation']}{mean}, "
          f"{row['device']}, {row['precision']}")
    width = max([len("these weights"), *(len(ref.label) for ref in result.references)])
    print(f"{'':<{width}}  top-1 error  top-5 error  tested")
    print(f"{'these weights':<{width}}  {_cell(row['top1_error'])}  {_cell(row['top5_error'])}  "
          f"{row['crops']} crop{'s' if row['crops'] > 1 else ''}")
    for ref in result.references:
        print(f"{ref.label:<{width}}  {_cell(ref.top1_error)}  {_cell(ref.top5_error)}  {ref.protocol}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"appended to {args.out}")
    return 0


def _cell(value: float | None) -> str:
    return f"{'—' if value is None else f'{value:.2f}':>11}"


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate", help="top-1/top-5 error of a weights file, beside the paper's and reproductions' numbers",
        description="Score a net's weights on CIFAR-10's test set or ImageNet's val (1 centre crop, or the paper's "
                    "10 crops), print the error beside the paper's number and the published reproductions', and append "
                    "it with its provenance to results/evaluations.csv. Formats: safetensors; a torch state dict "
                    "(torchvision's layout); our checkpoints; the CIFAR reproductions' ('state_dict', 'module.' keys, "
                    "a 'linear' head). Read without running code from the file. Our own weights need no options.")
    evaluate.add_argument("--model", required=True, help="a registered model, e.g. resnet20, resnet18 (`list`)")
    evaluate.add_argument("--weights", type=Path, required=True, help="the weights file")
    evaluate.add_argument("--dataset", choices=("cifar10", "imagenet"), default=None,
                          help="default: the model's (cifar10 for the CIFAR nets, imagenet for Table 1's)")
    evaluate.add_argument("--source", default="auto", help="CIFAR-10: auto, torchvision, jpeg75, synthetic (default auto)")
    evaluate.add_argument("--root", type=Path, default=None,
                          help="CIFAR-10: its folder or npz; ImageNet: the ImageFolder tree (train/ fixes the classes, val/ is scored)")
    evaluate.add_argument("--crops", type=int, default=1, help="ImageNet: 1 (centre 224 crop) or 10 (Section 3.4); default 1")
    evaluate.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda where there is one)")
    evaluate.add_argument("--normalisation", default=None,
                          help="mean-image (x/255 - the training images' mean image: the paper, our CIFAR-10 nets) or "
                               "mean-std (ImageNet's per-channel mean and std: our ImageNet nets, most CIFAR reproductions); "
                               "default: the model card's, else the project's for the dataset")
    evaluate.add_argument("--option-a-padding", default=None,
                          help="option A's zero channels: after (the project's) or both (split, as akamaster's CIFAR code)")
    evaluate.add_argument("--shortcut", default=None, help="A, B or C (default: the model card's, else the paper's); "
                                                           "torchvision's ResNet-18/34 are B")
    evaluate.add_argument("--bottleneck-stride", default=None, help="1x1 (the paper) or 3x3 (torchvision's v1.5 ResNet-50/101/152)")
    evaluate.add_argument("--precision", default=None, help="fp32, bf16 or fp16 (default: the model card's, else fp32)")
    evaluate.add_argument("--batch-size", type=int, default=None, help="images per batch (default: the model card's, "
                                                                       "else 1000 for CIFAR-10, 50 for ImageNet)")
    evaluate.add_argument("--workers", type=int, default=2, help="ImageNet: DataLoader worker processes (default 2)")
    evaluate.add_argument("--out", type=Path, default=Path("results") / "evaluations.csv",
                          help="the table the row is appended to (default results/evaluations.csv)")
    evaluate.set_defaults(func=_evaluate)
