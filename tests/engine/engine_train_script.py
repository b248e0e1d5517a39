"""Train a toy model through ``do_train`` with a checkpoint after every iteration, until killed.

Run as a script by ``test_kill_resume.py``: ``python engine_train_script.py OUTPUT_DIR MAX_ITER``.
It always passes ``resume=True``, so a second run continues from what the first left on disk.
"""

from __future__ import annotations

import sys

import torch
from engine_toys import L, RandomizedRegressor, ToyAugMapper, make_cfg, toy_dataset_dicts
from omegaconf import DictConfig

from rcnnzoo.data import build_detection_train_loader
from rcnnzoo.engine import do_train, seed_all_rng
from rcnnzoo.solver import cosine_schedule, get_default_optimizer_params

# Wide enough that each checkpoint (weights + momentum, ~4 MB) takes most of an iteration's time,
# so a kill at a random moment most likely lands inside a save.
WIDTH = 100_000


def build_cfg(output_dir: str, max_iter: int) -> DictConfig:
    return make_cfg(
        {
            "optimizer": L(torch.optim.SGD, params=L(get_default_optimizer_params), lr=0.01, momentum=0.9),
            "lr_multiplier": L(cosine_schedule, max_iter=max_iter, warmup_iter=0),
            "dataloader": {
                "train": L(
                    build_detection_train_loader,
                    dataset=L(toy_dataset_dicts, num=10),
                    mapper=L(ToyAugMapper),
                    total_batch_size=3,
                    seed=0,
                ),
            },
            "train": {
                "output_dir": output_dir,
                "max_iter": max_iter,
                "init_checkpoint": "",
                "checkpointer": {"period": 1, "max_to_keep": 2},
                "log_period": 1,
                "device": "cpu",
                "clip_grad": {"type": "norm", "value": 1.0},  # the wide layer diverges without
            },
        }
    )


def main(output_dir: str, max_iter: int) -> None:
    seed_all_rng(0)
    do_train(build_cfg(output_dir, max_iter), RandomizedRegressor(width=WIDTH), resume=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
