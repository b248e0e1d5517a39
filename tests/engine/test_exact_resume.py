"""--resume continues bit-exactly: N iterations, a crash, a resume to 2N == 2N iterations in one go.

Everything random is in play: the sampler's shuffling, augmentations drawing from ``random``, NumPy
and torch (:class:`ToyAugMapper`), dropout and random subsampling in the model, aspect-ratio
grouping that leaves images waiting in a bucket at the checkpoint, SGD momentum, a warmup + cosine
schedule and evaluation in between. The real config layer and data loader are used.
"""

from __future__ import annotations

import os

import pytest
import torch
from engine_toys import (
    L,
    RandomizedRegressor,
    SimulatedCrash,
    ToyAugMapper,
    ToyEvaluator,
    make_cfg,
    toy_dataset_dicts,
    toy_test_loader,
)
from omegaconf import DictConfig

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.data import build_detection_train_loader
from rcnnzoo.engine import do_train, seed_all_rng
from rcnnzoo.solver import cosine_schedule, get_default_optimizer_params

N = 6  # iterations before the crash; the full run has 2N


def _cfg(output_dir: str, num_workers: int = 0, amp: str | None = None) -> DictConfig:
    return make_cfg(
        {
            "optimizer": L(
                torch.optim.SGD,
                params=L(get_default_optimizer_params),
                lr=0.05,
                momentum=0.9,
                weight_decay=1e-4,
            ),
            "lr_multiplier": L(cosine_schedule, max_iter=2 * N, warmup_iter=2),
            "dataloader": {
                "train": L(
                    build_detection_train_loader,
                    dataset=L(toy_dataset_dicts, num=10),
                    mapper=L(ToyAugMapper),
                    total_batch_size=3,
                    num_workers=num_workers,
                    seed=None,  # drawn from the seeded global RNG: the checkpoint must restore it
                ),
                "test": L(toy_test_loader),
                "evaluator": L(ToyEvaluator, output_dir=None),
            },
            "train": {
                "output_dir": output_dir,
                "max_iter": 2 * N,
                "init_checkpoint": "",
                "checkpointer": {"period": N // 2},
                "eval_period": 4,
                "log_period": 5,
                "device": "cpu",
                "amp": {"enabled": amp is not None, "dtype": amp or "float16"},
            },
        }
    )


# fp16: the GradScaler skips the first steps (overflow at the initial scale), and torch warns about it.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
@pytest.mark.parametrize(
    "num_workers, amp", [(0, None), (2, None), (0, "float16")], ids=["main-process", "2-workers", "fp16"]
)
def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, num_workers, amp) -> None:
    straight, crashed = str(tmp_path / "straight"), str(tmp_path / "crashed")

    seed_all_rng(0)
    reference = RandomizedRegressor()
    do_train(_cfg(straight, num_workers, amp), reference)

    seed_all_rng(0)
    with pytest.raises(SimulatedCrash):  # dies in the forward of iteration N, after checkpoint N - 1
        do_train(_cfg(crashed, num_workers, amp), RandomizedRegressor(crash_at_call=N + 1))
    with open(os.path.join(crashed, "last_checkpoint"), encoding="utf-8") as f:
        assert f.read() == f"model_{N - 1:07d}.pth"

    seed_all_rng(1234)  # another seed, other initial weights: everything must come from the checkpoint
    resumed = RandomizedRegressor()
    do_train(_cfg(crashed, num_workers, amp), resumed, resume=True)

    assert resumed.seen_ids == reference.seen_ids[N * 3 :]  # the same images, in the same order
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name  # bit-identical, not approximately
    a = torch.load(os.path.join(straight, "model_final.pth"), weights_only=True)
    b = torch.load(os.path.join(crashed, "model_final.pth"), weights_only=True)
    for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(state_a["momentum_buffer"], state_b["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"] and a["iteration"] == b["iteration"] == 2 * N - 1
    if amp == "float16":
        assert a["grad_scaler"] == b["grad_scaler"]


def test_checkpoint_holds_rng_and_data_state_loadable_with_weights_only(tmp_path) -> None:
    out = str(tmp_path)
    seed_all_rng(0)
    do_train(_cfg(out), RandomizedRegressor())
    data = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)  # no pickled objects
    assert data["rng"]["world_size"] == 1 and len(data["rng"]["ranks"]) == 1
    rng = data["rng"]["ranks"][0]
    assert {"python", "numpy", "torch"} <= set(rng) and rng["torch"].dtype == torch.uint8
    loader_state = data["data_loader"]["ranks"][0]
    assert loader_state["position"] >= 2 * N * 3 and isinstance(loader_state["seed"], int)

    # Loading only the weights (init_checkpoint, --eval-only) ignores the training state.
    report = Checkpointer(RandomizedRegressor()).load(os.path.join(out, "model_final.pth"), [])
    assert not report.missing_keys and "rng" in report.extra
