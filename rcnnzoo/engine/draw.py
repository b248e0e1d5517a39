"""Draw a model's detections on a few evaluation images, so a run's quality can be seen, not just read."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from .defaults import cfg_get

__all__ = ["draw_predictions"]

logger = logging.getLogger(__name__)


def _test_dataset_name(cfg: Any) -> str | None:
    names = cfg_get(cfg, "dataloader.test.dataset.names", None)
    if names is None:
        return cfg_get(cfg, "dataloader.evaluator.dataset_name", None)
    return names if isinstance(names, str) else (list(names)[0] if len(names) else None)


def _top_proposals(proposals: Any, k: int = 20) -> Any:
    """The ``k`` best proposals as drawable instances (one class, no scores)."""
    from rcnnzoo.structures import Instances

    order = proposals.objectness_logits.argsort(descending=True)[:k]
    boxes = proposals.proposal_boxes[order]
    return Instances(proposals.image_size, pred_boxes=boxes, pred_classes=torch.zeros(len(boxes), dtype=torch.int64))


def draw_predictions(
    cfg: Any,
    model: nn.Module,
    output_dir: str,
    num_images: int = 6,
    score_threshold: float = 0.5,
    to_event_storage: bool = False,
) -> list[str]:
    """Run ``model`` on the first ``num_images`` images of ``cfg.dataloader.test`` and save drawings.

    Each picture is the original image with the detections scoring at least ``score_threshold``
    (boxes, class names from the dataset's metadata, scores, masks when predicted; for a proposal
    network, its 20 best proposals), written to
    ``<output_dir>/predictions/<image stem>.png``.

    With ``to_event_storage`` the pictures also go to the current event storage (as
    ``predictions/<stem>``), so the TensorBoard writer shows them at this iteration.

    Returns:
        The paths written.
    """
    from rcnnzoo.config import instantiate
    from rcnnzoo.data import MetadataCatalog
    from rcnnzoo.data.mapper import read_image
    from rcnnzoo.utils.visualizer import draw_instances, save_image

    dataset = instantiate(cfg.dataloader.test.dataset)
    mapper = instantiate(cfg.dataloader.test.mapper)
    name = _test_dataset_name(cfg)
    class_names = MetadataCatalog.get(name).get("thing_classes") if name else None
    # (a proposal network of selective search has no parameters, hence the buffers and the default)
    tensor = next(iter(model.parameters()), None)
    tensor = tensor if tensor is not None else next(iter(model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    paths = []
    try:
        for dataset_dict in list(dataset)[:num_images]:
            inputs = mapper(dict(dataset_dict))
            inputs["image"] = inputs["image"].to(device)
            with torch.no_grad():
                output = model([inputs])[0]
            image = read_image(dataset_dict["file_name"], "RGB")
            if "instances" in output:
                instances = output["instances"].to("cpu")
                drawing = draw_instances(image, instances, class_names, score_threshold=score_threshold)
            else:  # a proposal network: its best proposals, unlabelled
                drawing = draw_instances(image, _top_proposals(output["proposals"].to("cpu")), ["proposal"])
            stem = os.path.splitext(os.path.basename(dataset_dict["file_name"]))[0]
            path = os.path.join(output_dir, "predictions", f"{stem}.png")
            save_image(drawing, path)
            paths.append(path)
            if to_event_storage:
                from rcnnzoo.utils.events import get_event_storage

                get_event_storage().put_image(f"predictions/{stem}", drawing)
    finally:
        model.train(was_training)
    if paths:
        logger.info(f"Drew detections on {len(paths)} images in {os.path.dirname(paths[0])}")
    return paths
