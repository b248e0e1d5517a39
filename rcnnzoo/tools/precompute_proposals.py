"""Run a config's proposal generator over a registered dataset and save the proposals in one file.

Examples::

    python tools/precompute_proposals.py --config-file Classic/selective_search_shapes.py \\
        --dataset shapes_train --num-workers 8
    python tools/precompute_proposals.py --config-file Shapes/faster_rcnn_tiny_fpn.py \\
        --dataset shapes_train --weights output/shapes_faster_rcnn_tiny_fpn/model_final.pth \\
        --output proposals/rpn_shapes_train.npz train.device=cuda

The proposal generator is the config's ``model.proposal_generator`` (selective search, or an RPN
with the weights of ``--weights``, default ``train.init_checkpoint``); each image is resized as
``dataloader.test.mapper`` says, and the proposals are mapped back to the original image.

A generator without parameters (selective search: CPU-bound, one image at a time) runs inside the
``--num-workers`` loader processes, one image each; a network runs here, on ``train.device``,
while the workers read and resize the images.

Writes ``--output`` (default ``<train.output_dir>/proposals_<dataset>.npz``): the dataset's image
ids and, per image, boxes (XYXY, original image pixels) and scores; see
:mod:`rcnnzoo.data.proposals`. Train or evaluate on them with
``dataloader.train.dataset.proposal_files=[FILE]`` and ``PrecomputedProposals`` as the model's
proposal generator. ``KEY=VALUE`` config overrides come last.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.config import instantiate
from rcnnzoo.data import DatasetCatalog, save_proposals, trivial_batch_collator
from rcnnzoo.engine.defaults import cfg_get, resolve_device
from rcnnzoo.modeling import PrecomputedProposals, ProposalNetwork
from rcnnzoo.tools.train_net import load_config
from rcnnzoo.utils.logger import setup_logger

__all__ = ["main", "run", "build_parser", "build_proposal_model"]

logger = logging.getLogger("rcnnzoo.precompute_proposals")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="precompute_proposals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="config path or shipped config name"
    )
    parser.add_argument("--dataset", required=True, metavar="NAME", help="a registered dataset name")
    parser.add_argument(
        "--output",
        default=None,
        metavar="FILE",
        help="the .npz to write (default <train.output_dir>/proposals_<dataset>.npz)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="checkpoint for a network generator (default: the config's train.init_checkpoint)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="loader processes (0: all in this process); default min(8, CPU count)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY=VALUE, at the end"
    )
    return parser


def build_proposal_model(cfg: Any, weights: str | None = None) -> ProposalNetwork:
    """The config's backbone and proposal generator as a :class:`ProposalNetwork` in eval mode.

    A ``ProposalNetwork`` config is used as it is; for a detector (``GeneralizedRCNN``) its
    backbone and proposal generator are taken, and the backbone is left out when the generator
    reads no features. ``weights`` (default ``cfg.train.init_checkpoint``) is loaded into the
    config's whole model first, so a detector's checkpoint fits.

    Raises:
        SystemExit: the model has no proposal generator, or one that only reads proposals
            (``PrecomputedProposals``).
    """
    model = instantiate(cfg.model)
    generator = getattr(model, "proposal_generator", None)
    if generator is None:
        raise SystemExit(f"The config's model ({type(model).__name__}) has no proposal_generator")
    if isinstance(generator, PrecomputedProposals):
        raise SystemExit(
            "The config's proposal generator is PrecomputedProposals, which reads proposals from a file: "
            "there is nothing to compute. Use a config with SelectiveSearch or an RPN"
        )
    Checkpointer(model).load(weights if weights is not None else cfg_get(cfg, "train.init_checkpoint", ""))
    if not isinstance(model, ProposalNetwork):
        backbone = model.backbone if getattr(generator, "needs_features", True) else None
        model = ProposalNetwork(
            backbone=backbone,
            proposal_generator=generator,
            pixel_mean=tuple(model.pixel_mean.flatten().tolist()),
            pixel_std=tuple(model.pixel_std.flatten().tolist()),
            pixel_divisor=getattr(model, "pixel_divisor", 1.0),
            input_format=model.input_format,
        )
    return model.eval()


def _has_parameters(model: torch.nn.Module) -> bool:
    return any(True for _ in model.parameters())


@torch.no_grad()
def _propose(model: ProposalNetwork, inputs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Boxes float32[P, 4] (original image, XYXY) and scores float32[P] of one mapped input."""
    proposals = model([inputs])[0]["proposals"].to("cpu")
    return proposals.proposal_boxes.tensor.float().numpy(), proposals.objectness_logits.float().numpy()


class _Images(Dataset):
    """Item ``i``: image ``i`` mapped for the model; with ``model``, its proposals instead."""

    def __init__(self, dicts: list[dict], mapper: Any, model: ProposalNetwork | None):
        self.dicts, self.mapper, self.model = dicts, mapper, model

    def __len__(self) -> int:
        return len(self.dicts)

    def __getitem__(self, i: int) -> Any:
        inputs = self.mapper(dict(self.dicts[i]))
        if self.model is None:
            return inputs
        return _propose(self.model, inputs)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Compute and write the proposals (see the module docstring).

    Returns:
        ``{"output": path, "num_images": int, "mean_proposals": float, "seconds_per_image": float,
        "in_workers": bool}`` (``in_workers``: the proposals were computed in the loader processes).
    """
    cfg = load_config(args.config_file, args.opts)
    if cfg_get(cfg, "dataloader.test.mapper", None) is None:
        raise SystemExit("The config has no dataloader.test.mapper (it says how to resize the images)")
    dicts = DatasetCatalog.get(args.dataset)
    if not dicts:
        raise SystemExit(f"Dataset {args.dataset!r} is empty")
    output = args.output or os.path.join(
        cfg_get(cfg, "train.output_dir", None) or ".", f"proposals_{args.dataset}.npz"
    )
    model = build_proposal_model(cfg, args.weights)
    mapper = instantiate(cfg.dataloader.test.mapper)
    # A generator without parameters is per-image CPU work: it runs in the loader processes.
    in_workers = not _has_parameters(model)
    if not in_workers:
        model.to(resolve_device(cfg_get(cfg, "train.device", None)))
    loader = DataLoader(
        _Images(dicts, mapper, model if in_workers else None),
        batch_size=1,
        num_workers=max(0, args.num_workers),
        collate_fn=trivial_batch_collator,
        # Not fork: OpenCV's thread pool, once used in this process, deadlocks in a forked child
        # (seen: the workers hung in cv2 after the test suite had used cv2 in the parent).
        multiprocessing_context="spawn" if args.num_workers > 0 else None,
    )
    logger.info(
        "Proposals of %s for the %d images of %s, %s, %d loader workers",
        type(model.proposal_generator).__name__,
        len(dicts),
        args.dataset,
        "computed in the workers" if in_workers else f"computed here on {model.device}",
        args.num_workers,
    )
    boxes: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    start = time.perf_counter()
    with tqdm(total=len(dicts), desc="proposals", unit="img") as bar:
        for (item,) in loader:
            b, s = item if in_workers else _propose(model, item)
            boxes.append(b)
            scores.append(s)
            bar.update(1)
    elapsed = time.perf_counter() - start
    save_proposals(output, [d["image_id"] for d in dicts], boxes, scores)
    mean = float(np.mean([len(b) for b in boxes]))
    logger.info(
        "Wrote %s: %d images, %.1f proposals per image, %.3f s per image",
        output,
        len(dicts),
        mean,
        elapsed / len(dicts),
    )
    return {
        "output": output,
        "num_images": len(dicts),
        "mean_proposals": mean,
        "seconds_per_image": elapsed / len(dicts),
        "in_workers": in_workers,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line and run; returns what :func:`run` returns."""
    args = build_parser().parse_args(argv)
    setup_logger(name="rcnnzoo")
    return run(args)


if __name__ == "__main__":
    main()
