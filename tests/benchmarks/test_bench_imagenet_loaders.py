"""ImageNet training-loader throughput (issue #11): the "ffcv" loader against the torch DataLoader,
side by side in one run, on an ImageNet-shaped folder the benchmark generates.

    .venv/bin/python -m pytest tests/benchmarks/test_bench_imagenet_loaders.py --benchmark-only -s

The folder: IMAGES photo-like JPEGs (quality 90, about 90 KB each) of typical ImageNet sizes (500x375
and its neighbours) in 10 classes; the betons are written from it as a user would (``python -m
benchmark data write-beton --dataset imagenet``: JPEG quality 90, shorter side capped at 480, which
leaves these images whole). Both loaders produce the paper's training views (Section 3.4: shorter
side S in [256, 480], a random 224 crop, a flip, the PCA colour shift, mean/std normalisation) in
batches of 256 on the CPU; every batch is touched:

- baseline, ``loader="torch"``: PIL decode and torchvision transforms in 2 DataLoader worker
  processes (the machine's 2 cores);
- ``loader="ffcv"``: FFCV's JPEG decode, the crop decoder and the normalising operation, 2 threads.

Set-up is outside the timing, fairly for both: one warm-up epoch each (worker start-up for the
torch loader; numba compilation for FFCV, paid once per process), then ROUNDS alternating rounds
of one epoch each (a new epoch index: new order and crops), so that load from other users of the
machine hits both sides alike. The torch epoch runs in the round's ``setup`` and is timed with
``perf_counter``; pytest-benchmark times the FFCV epoch. Goal, asserted: ffcv >= 3x the torch
loader's images/s on the 2-core machine. Also reported: images per CPU-second of each side (this
process's threads and the DataLoader's finished workers), which says what each pipeline costs
whatever share of a shared machine's cores it got.
"""

from __future__ import annotations

import itertools
import os
import resource
import time

import pytest
import torch

from benchmark.data.loaders import build_imagenet_loaders
from benchmark.data.sample_imagenet import write_tree

IMAGES = 2_560  # 10 batches of 256
BATCH = 256
ROUNDS = 3
GOAL = 3.0
SIZES = [(500, 375), (375, 500), (500, 333), (500, 400), (450, 338)]  # (width, height), ImageNet's usual
CLASSES = tuple(f"n{c:08d}" for c in range(10))


def imagenet_folder(root, images: int = IMAGES):  # noqa: ANN001, ANN201
    """An ImageNet-shaped tree of `images` training JPEGs in 10 classes, and its betons."""
    from benchmark.data.imagenet_beton import write_imagenet_betons

    per_class = images // len(CLASSES)
    sizes = write_tree(root, CLASSES, [SIZES[i % len(SIZES)] for i in range(per_class)], [SIZES[0]] * 10,
                       detail=(30, 40), grain=12.0, workers=len(os.sched_getaffinity(0)))
    write_imagenet_betons(root)
    print(f"\n{images} JPEGs written, {sum(sizes[:images]) / images / 1e3:.0f} KB each on average")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pytest.importorskip("ffcv")
    return imagenet_folder(tmp_path_factory.mktemp("imagenet-shaped"))


def cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its finished children (DataLoader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def touch_epoch(loader, index: int, cpu: list[float]) -> int:
    """One epoch, every batch read; appends the CPU seconds it took to ``cpu``."""
    images, start = 0, cpu_seconds()
    for x, y in loader.epoch(index):
        images += int(y.shape[0])
        float(x[-1, -1, -1, -1])
    cpu.append(cpu_seconds() - start)
    return images


def test_ffcv_against_the_torch_dataloader(benchmark, folder):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loaders' own workers/threads do the work; the main thread consumes
    try:
        torch_train, _ = build_imagenet_loaders(folder, BATCH, num_workers=2, loader="torch")
        ffcv_train, _ = build_imagenet_loaders(folder, BATCH, num_workers=2, loader="ffcv")
        epochs = itertools.count()
        warmup, cpu = {}, {"torch": [], "ffcv": []}
        for name, loader in (("torch", torch_train), ("ffcv", ffcv_train)):
            start = time.perf_counter()
            touch_epoch(loader, next(epochs), [])
            warmup[name] = time.perf_counter() - start
        torch_seconds: list[float] = []

        def run_torch_round() -> None:
            start = time.perf_counter()
            touch_epoch(torch_train, next(epochs), cpu["torch"])
            torch_seconds.append(time.perf_counter() - start)

        benchmark.group = "imagenet-loaders"
        benchmark.pedantic(lambda: touch_epoch(ffcv_train, next(epochs), cpu["ffcv"]), setup=run_torch_round,
                           rounds=ROUNDS, iterations=1)
    finally:
        torch.set_num_threads(threads)
    images = len(ffcv_train) * BATCH
    assert len(torch_train) == len(ffcv_train)
    torch_rate = images / sorted(torch_seconds)[len(torch_seconds) // 2]
    ffcv_rate = images / benchmark.stats.stats.median
    ratio = ffcv_rate / torch_rate
    # images per CPU-second: what each pipeline costs, whatever share of the cores it got
    per_cpu = {name: images / sorted(seconds)[len(seconds) // 2] for name, seconds in cpu.items()}
    benchmark.extra_info.update(images_per_epoch=images, torch_images_per_s=round(torch_rate, 1),
                                ffcv_images_per_s=round(ffcv_rate, 1), ratio=round(ratio, 2),
                                images_per_cpu_s={name: round(rate, 1) for name, rate in per_cpu.items()},
                                warmup_s={name: round(s, 1) for name, s in warmup.items()},
                                cores=len(os.sched_getaffinity(0)), load_average=os.getloadavg()[0])
    print(f"\nImageNet training loaders, {images} images/epoch, batch {BATCH}, median of {ROUNDS} alternating "
          f"epochs (load average {os.getloadavg()[0]:.1f}):\n  torch DataLoader {torch_rate:8,.0f} images/s "
          f"{per_cpu['torch']:6,.0f} per CPU-second (warm-up {warmup['torch']:.1f} s)\n  ffcv             "
          f"{ffcv_rate:8,.0f} images/s {per_cpu['ffcv']:6,.0f} per CPU-second (warm-up {warmup['ffcv']:.1f} s)\n"
          f"  {ratio:.2f}x the images/s (goal {GOAL:.0f}x), {per_cpu['ffcv'] / per_cpu['torch']:.2f}x the images per CPU-second")
    assert ratio >= GOAL, f"ffcv only {ratio:.2f}x the torch DataLoader (goal {GOAL}x)"
