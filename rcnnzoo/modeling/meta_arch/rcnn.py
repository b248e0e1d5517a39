"""GeneralizedRCNN: backbone -> proposal generator -> RoI heads (Fast/Faster/Mask R-CNN)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rcnnzoo.config import build_part
from rcnnzoo.modeling.backbone import Backbone
from rcnnzoo.structures import ImageList, Instances

from .build import META_ARCH_REGISTRY
from .postprocessing import detector_postprocess

__all__ = ["GeneralizedRCNN"]


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """The two-stage detector.

    Calling convention (detectron2's): ``model(batched_inputs)`` where each input is a dict
    with ``"image"`` (uint8 or float Tensor[C, H, W] in ``input_format``), optional
    ``"height"``/``"width"`` (the size to report detections at, default the image's), and in
    training ``"instances"`` (ground truth). Training mode returns a dict of losses; eval
    mode a list of ``{"instances": Instances(pred_boxes, scores, pred_classes)}``.

    ``proposal_generator`` and ``roi_heads`` may be lazy configs: they are built here with
    ``input_shape=backbone.output_shape()``.

    Args:
        pixel_mean, pixel_std: per-channel normalization in ``input_format`` order; kept as
            buffers so checkpoints carry them.
        input_format: "BGR" or "RGB", the channel order the model expects.
    """

    _deferred_args_ = ("proposal_generator", "roi_heads")

    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: Any,
        roi_heads: Any,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        input_format: str = "BGR",
    ):
        super().__init__()
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
        self.backbone = backbone
        shape = backbone.output_shape()
        self.proposal_generator = build_part(proposal_generator, input_shape=shape)
        self.roi_heads = build_part(roi_heads, input_shape=shape)
        self.input_format = input_format
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """Normalize and pad the images into an ImageList (size divisible by the backbone's)."""
        images = []
        for x in batched_inputs:
            img = x["image"].to(self.device, non_blocking=True)
            images.append((img.float() - self.pixel_mean) / self.pixel_std)
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        if not self.training:
            return self.inference(batched_inputs)
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("In training mode every input needs 'instances' (the ground truth)")
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        return {**detector_losses, **proposal_losses}

    def inference(self, batched_inputs: list[dict], do_postprocess: bool = True) -> list[dict] | list[Instances]:
        """Detections for each input, rescaled to its ``height`` x ``width`` when ``do_postprocess``."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        proposals, _ = self.proposal_generator(images, features, None)
        results, _ = self.roi_heads(images, features, proposals, None)
        if not do_postprocess:
            return results
        out = []
        for result, inp, size in zip(results, batched_inputs, images.image_sizes):
            height = inp.get("height", size[0])
            width = inp.get("width", size[1])
            out.append({"instances": detector_postprocess(result, height, width)})
        return out
