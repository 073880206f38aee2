"""Data-parallel trials without Ray: the loaders' rank shares, and DDP (two gloo processes) against
one process on the same global batches; the suite and placement checks that come first."""

from __future__ import annotations

import faulthandler
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from benchmark import BenchmarkError, DataError
from benchmark.data import build_loaders, load_cifar10
from benchmark.data.torch_loader import TorchLoader
from benchmark.fleet.preflight import DRIVER_CPU, check_placement, driver_request
from benchmark.fleet.ray_cluster import DRIVER_RESOURCE, ClusterError, Node
from benchmark.suite.recipes import IMAGENET_HE2015
from benchmark.suite.spec import Resources, load_suite
from benchmark.training.data_parallel import Replicas, exit_spawned_rank
from benchmark.training.schedule import LRSchedule
from benchmark.training.step import TrainStep, evaluate

RANKS = 2
BATCH = 16


def _data():
    return load_cifar10("synthetic", synthetic_size=96)


def test_device_loader_ranks_together_take_the_single_process_global_batch() -> None:
    data = _data()
    single, _ = build_loaders(data, batch_size=BATCH, seed=3)
    shares = [build_loaders(data, batch_size=BATCH, seed=3, shard=(rank, RANKS))[0] for rank in range(RANKS)]
    assert {len(s) for s in shares} == {len(single)}
    for epoch in (0, 1):  # a seeded shuffle, different per epoch, with the same crops and flips
        for whole, *parts in zip(single.epoch(epoch), *(s.epoch(epoch) for s in shares)):
            assert all(x.shape[0] == BATCH // RANKS for x, _ in parts)
            assert torch.equal(torch.cat([x for x, _ in parts]), whole[0])
            assert torch.equal(torch.cat([y for _, y in parts]), whole[1])
    first = [y for _, y in single.epoch(0)]
    second = [y for _, y in single.epoch(1)]
    assert not all(torch.equal(a, b) for a, b in zip(first, second))


def test_evaluation_shares_cover_every_image_exactly_once() -> None:
    data = _data()
    seen = []
    for rank in range(3):  # 96 eval images over 3 ranks, batches of 10: no padding, no duplicates
        _, eval_loader = build_loaders(data, batch_size=12, eval_batch_size=10, shard=(rank, 3))
        seen += [x for x, _ in eval_loader.epoch(0)]
    _, whole = build_loaders(data, batch_size=BATCH, eval_batch_size=10)
    assert torch.equal(torch.cat(seen), torch.cat([x for x, _ in whole.epoch(0)]))


def test_torch_loader_shares_decode_only_their_own_images() -> None:
    class Indexed(torch.utils.data.Dataset):  # the image is its index: what each rank loads, exactly
        def __len__(self) -> int:
            return 50

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            return torch.tensor([float(index)]), index

    def batches(shard: tuple[int, int], drop_last: bool, batch: int) -> list[torch.Tensor]:
        loader = TorchLoader(Indexed(), batch, seed=1, shuffle=drop_last, drop_last=drop_last, num_workers=0, shard=shard)
        return [y for _, y in loader.epoch(2)]

    whole = batches((0, 1), True, 8)
    parts = [batches((rank, 2), True, 8) for rank in range(2)]
    assert len(whole) == 50 // 8 and all(len(p) == len(whole) for p in parts)
    assert all(torch.equal(torch.cat(pair), w) for pair, w in zip(zip(*parts), whole))
    evaluation = torch.cat([torch.cat(batches((rank, 3), False, 7)) for rank in range(3)])
    assert torch.equal(evaluation, torch.arange(50))


def test_other_cifar_loaders_are_not_sharded() -> None:
    with pytest.raises(DataError, match="'device' loader"):
        build_loaders(_data(), loader="torch", batch_size=BATCH, shard=(0, 2))


class Probe(nn.Module):
    """A BN-free net: a data-parallel step must equal the single-process step exactly (up to the
    order of floating-point sums)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _trained(replicas: Replicas, steps: int) -> tuple[TrainStep, dict[str, float], dict[str, float]]:
    torch.manual_seed(0)
    model = Probe()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    trainer = TrainStep(replicas.prepare(model), optimizer, "cpu", wrap=replicas.wrap)
    train_loader, eval_loader = build_loaders(_data(), batch_size=BATCH, eval_batch_size=20, seed=0, shard=replicas.shard)
    for x, y in list(train_loader.epoch(0))[:steps]:
        trainer.step(x, y)
    train = replicas.reduce_train(trainer.pop_metrics(), torch.device("cpu"))
    evaluation = replicas.reduce_eval(evaluate(trainer.model, eval_loader.epoch(0), "cpu"), torch.device("cpu"))
    return trainer, train, evaluation


def _rank_main(rank: int, out: str) -> None:
    faulthandler.enable()  # a rank that aborts prints where
    torch.set_num_threads(1)
    # A file rendezvous, as gpu-check's: a free TCP port picked beforehand can be taken by another
    # process (Ray's, under pytest-xdist) before rank 0 binds it (seen: rank 0 aborted in gloo).
    torch.distributed.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=RANKS)
    try:
        replicas = Replicas(rank=rank, world_size=RANKS)
        trainer, train, evaluation = _trained(replicas, steps=3)
        # The plateau schedule (ImageNet's) decides on rank 0 and every rank follows: rank 0's
        # evaluation error stalls (the rate drops after `plateau_patience` evaluations), rank 1's
        # keeps improving (it alone would never drop it). Evaluations are summed over ranks in
        # training, so ranks see the same errors there; here they differ, to show who decides.
        schedule = LRSchedule.for_depth(IMAGENET_HE2015, 18)
        for error in ((60.0, 60.0, 60.0, 60.0) if rank == 0 else (60.0, 50.0, 40.0, 30.0)):
            schedule.observe_eval_error(error)
            replicas.sync_schedule(schedule)
        replicas.check_in_sync(trainer.model, 3)  # in step: passes
        params = [p.detach().clone() for p in trainer.model.parameters()]
        with torch.no_grad():
            next(trainer.model.parameters())[0].add_(rank)  # rank 1 drifts
        try:
            replicas.check_in_sync(trainer.model, 4)
            drift = ""
        except BenchmarkError as exc:
            drift = str(exc)
        torch.save({"drift": drift, "params": params, "train": train,
                    "evaluation": evaluation, "schedule": schedule.state_dict()}, f"{out}/rank{rank}.pt")
        torch.distributed.barrier()  # every rank done before any tears the group down
    finally:
        torch.distributed.destroy_process_group()
    exit_spawned_rank()


@pytest.mark.slow
def test_a_data_parallel_step_equals_the_single_process_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    mp.spawn(_rank_main, args=(str(tmp_path),), nprocs=RANKS, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(RANKS)]
    single, train, evaluation = _trained(Replicas(), steps=3)
    for rank in ranks:  # identical on every rank, and equal to one process on the global batches
        for mine, theirs, alone in zip(rank["params"], ranks[0]["params"], single.model.parameters()):
            assert torch.equal(mine, theirs)
            torch.testing.assert_close(mine, alone.detach(), rtol=1e-5, atol=1e-6)
        assert rank["train"]["samples"] == train["samples"] == 3 * BATCH
        assert rank["train"]["train_error"] == pytest.approx(train["train_error"])
        assert rank["train"]["train_loss"] == pytest.approx(train["train_loss"], rel=1e-5)
        assert rank["evaluation"]["samples"] == evaluation["samples"] == len(_data().y_eval)  # every image once
        assert rank["evaluation"]["top1_error"] == pytest.approx(evaluation["top1_error"])
        assert rank["evaluation"]["loss"] == pytest.approx(evaluation["loss"], rel=1e-5)
        assert rank["schedule"] == ranks[0]["schedule"]
        assert rank["schedule"]["plateau_scale"] == pytest.approx(IMAGENET_HE2015.lr_decay)  # rank 0's decision
        assert rank["drift"].startswith("data-parallel ranks out of step at step 4")


SUITE = """
name: ddp
data: {{dataset: cifar10, source: synthetic}}
loader: {loader}
recipe: {{name: cifar10_he2015, batch_size: {batch}}}
grid: {{model: [resnet20]}}
resources: {{workers: {workers}, cpu: 1}}
"""


def test_suites_that_cannot_split_their_batch_or_shard_their_loader_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ddp.yaml"
    path.write_text(SUITE.format(loader="device", batch=128, workers=3))
    with pytest.raises(BenchmarkError, match="3 ranks cannot split the recipe's batch of 128"):
        load_suite(path)
    path.write_text(SUITE.format(loader="torch", batch=128, workers=2))
    with pytest.raises(BenchmarkError, match="use loader: device"):
        load_suite(path)
    path.write_text(SUITE.format(loader="device", batch=128, workers=2) + "sync_bn: true\n")
    with pytest.raises(BenchmarkError, match="sync_bn: synchronised BN is for data-parallel GPU ranks"):
        load_suite(path)
    # Two ranks on half a GPU each: Ray packs them onto one device, and NCCL cannot run them there.
    path.write_text(SUITE.format(loader="device", batch=128, workers=2).replace("cpu: 1", "gpu: 0.5"))
    with pytest.raises(BenchmarkError, match="resources.gpu: 0.5 per worker shares a GPU between data-parallel ranks"):
        load_suite(path)
    path.write_text(SUITE.format(loader="device", batch=128, workers=2))
    suite = load_suite(path)
    assert suite.trials()[0].resources.workers == 2 and not suite.trials()[0].sync_bn
    path.write_text(SUITE.format(loader="device", batch=128, workers=2).replace("cpu: 1", "gpu: 1") + "sync_bn: true\n")
    assert load_suite(path).trials()[0].sync_bn


def test_sync_bn_replaces_batch_norm_and_keeps_the_checkpoint_names() -> None:
    from benchmark.models import build_model

    plain = build_model("resnet20")
    synced = Replicas(rank=0, world_size=2, sync_bn=True).prepare(build_model("resnet20"))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    assert list(synced.state_dict()) == list(plain.state_dict())
    assert Replicas(sync_bn=True).prepare(plain) is plain  # one rank: nothing to synchronise


def test_the_local_executor_refuses_data_parallel_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.__main__ import main

    path = tmp_path / "ddp.yaml"
    path.write_text(SUITE.format(loader="device", batch=32, workers=2))
    assert main(["run", str(path), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"]) == 2
    assert "data-parallel workers run under Ray Train" in capsys.readouterr().err
    assert not (tmp_path / "results" / "ddp").exists()


def test_placement_counts_workers_and_keeps_drivers_off_the_workers_cpus() -> None:
    two = [Node(f"n{i}", {"CPU": 1.0}) for i in range(2)]
    # without the driver resource, a driver's sliver of CPU leaves no node a whole CPU
    assert driver_request(two) == {"CPU": DRIVER_CPU}
    with pytest.raises(ClusterError, match="2 workers of CPU 1.*can place 2 such worker.*driver's 0.01 CPU"):
        check_placement(Resources(workers=2, cpu=1), two, "the cluster")
    head = Node("head", {DRIVER_RESOURCE: 100.0})
    assert driver_request([head, *two]) == {DRIVER_RESOURCE: 1.0}
    assert check_placement(Resources(workers=2, cpu=1), [head, *two], "the cluster") == 1
    assert check_placement(Resources(workers=2, cpu=0.5), [head, *two], "the cluster") == 2
    with pytest.raises(ClusterError, match="3 workers of CPU 1, but the cluster can place 2"):
        check_placement(Resources(workers=3, cpu=1), [head, *two], "the cluster")
    with pytest.raises(BenchmarkError, match="gpu <= 1"):
        check_placement(Resources(workers=2, gpu=2), [head, *two], "the cluster")


def test_more_workers_than_the_machine_can_place_is_refused_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.__main__ import main

    cores = len(os.sched_getaffinity(0))
    path = tmp_path / "ddp.yaml"
    path.write_text(SUITE.format(loader="device", batch=64, workers=2 * cores))
    started = time.monotonic()
    assert main(["run", str(path), "--results", str(tmp_path / "results"), "--no-report"]) == 2
    assert time.monotonic() - started < 5  # before Ray starts (benchmark.suite.machine)
    err = capsys.readouterr().err
    assert f"resources.workers: a trial asks for {2 * cores} workers x 1 CPUs, but this machine has {cores} cores" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "results" / "ddp").exists()
