"""ClassStats.all_reduce_ and the Trainer callback under torch.distributed: two CPU processes on
gloo, each adding half of the data, equal one process adding all of it (1e-12 relative)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc import ClassStats

V, D, LAYER_D = 9, 4, 3
WORLD = 2


def _batches(seed: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(30, D, generator=g, dtype=torch.float64) * 0.5 + 100.0,  # far offset
             torch.randn(30, LAYER_D, generator=g, dtype=torch.float64) - 7.0,
             torch.randint(0, V, (30,), generator=g)) for _ in range(n)]


TRAIN, VAL = _batches(0, 6), _batches(1, 4)
W = torch.randn(V, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def _run(stats: ClassStats, rank: int, world: int) -> ClassStats:
    for x, h, y in TRAIN[rank::world]:
        stats.add(x, y, layer_features=[h])
    if world > 1:
        stats.all_reduce_()
    for x, _, y in VAL[rank::world]:
        stats.add_validation(x, y, W)
    if world > 1:
        stats.all_reduce_()
    return stats


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str, job: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)
    try:
        if job == "stats":
            stats = _run(ClassStats(V, D, layers={3: LAYER_D}), rank, WORLD)
            torch.save({"tensors": stats.tensors, "tokens": stats.tokens,
                        "measures": stats.measures()}, f"{out}/rank{rank}.pt")
        else:
            _callback_job(rank, out)
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path, job: str) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), job), nprocs=WORLD, join=True)


def test_all_reduce_of_two_gloo_ranks_equals_one_process(tmp_path):
    _spawn(tmp_path, "stats")
    whole = _run(ClassStats(V, D, layers={3: LAYER_D}), 0, 1)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for key, want in whole.tensors.items():
            torch.testing.assert_close(got["tensors"][key], want, rtol=1e-12, atol=0,
                                       msg=f"rank {rank}: {key}")
        assert got["tokens"] == whole.tokens
        for key, value in whole.measures().items():
            assert got["measures"][key] == pytest.approx(value, rel=1e-12), key


def test_all_reduce_needs_torch_distributed_and_pass_1_first():
    stats = ClassStats(V, D)
    with pytest.raises(UserError, match=r"all_reduce_ needs torch\.distributed"):
        stats.all_reduce_()


# ---------------------------------------------------------------------------------------------
# The Trainer callback under DDP


CB_V, CB_D, CB_T = 30, 16, 10


def _callback(csv_path):
    from linguistic_collapse.lm.hf_callback import NeuralCollapseCallback

    rng = np.random.default_rng(0)
    return NeuralCollapseCallback(rng.integers(0, CB_V, (7, CB_T)), rng.integers(0, CB_V, (3, CB_T)),
                                  every_n_steps=1, batch_size=2, csv_path=csv_path)


def _model():
    from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config

    return build_model(gpt_neo_config(1, CB_D, CB_V, CB_T), seed=0)


class _State:
    global_step, epoch = 1, 0.5

    def __init__(self):
        self.log_history = []


def _callback_job(rank: int, out: str) -> None:
    cb = _callback(f"{out}/nc.csv")
    model = _model()
    cb.on_train_begin(None, _State(), None, model=model)
    cb.on_step_end(None, _State(), None, model=model)
    torch.save(cb.rows, f"{out}/rows{rank}.pt")


@pytest.mark.slow
def test_the_callback_under_ddp_measures_all_blocks_and_rank_0_writes_the_csv(tmp_path):
    _spawn(tmp_path, "callback")
    alone = _callback(None).measure(_model())
    rows = [torch.load(tmp_path / f"rows{r}.pt") for r in range(WORLD)]
    for got in rows:
        for key, value in alone.items():
            assert got[0]["nc/" + key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    lines = (tmp_path / "nc.csv").read_text().splitlines()
    assert len(lines) == 2  # one header and one row: rank 0 alone wrote it
