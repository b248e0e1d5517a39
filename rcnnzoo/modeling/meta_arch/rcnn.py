"""GeneralizedRCNN: backbone -> proposal generator -> RoI heads (Fast/Faster/Mask R-CNN)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from rcnnzoo.config import build_part
from rcnnzoo.modeling.backbone import Backbone
from rcnnzoo.structures import ImageList, Instances

from .build import META_ARCH_REGISTRY
from .postprocessing import detector_postprocess

__all__ = ["GeneralizedRCNN", "run_proposal_generator", "normalize_images", "register_normalization"]


def register_normalization(
    model: nn.Module, pixel_mean: Sequence[float], pixel_std: Sequence[float], pixel_divisor: float
) -> None:
    """Give ``model`` what :func:`normalize_images` reads: ``pixel_mean`` / ``pixel_std`` buffers
    (Tensor[C, 1, 1], not saved in checkpoints) and a positive ``pixel_divisor``."""
    if pixel_divisor <= 0:
        raise ValueError(f"pixel_divisor must be positive, got {pixel_divisor}")
    model.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
    model.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
    model.pixel_divisor = float(pixel_divisor)


def normalize_images(model: nn.Module, batched_inputs: list[dict]) -> list[torch.Tensor]:
    """Each input's ``"image"`` (uint8 Tensor[C, H, W]) on ``model.device`` as float
    ``(image - model.pixel_mean) / model.pixel_std``; the meta-architectures' shared first step.

    A model with ``pixel_divisor`` other than 1 (see :class:`GeneralizedRCNN`) computes
    ``(image / pixel_divisor - pixel_mean) / pixel_std`` instead.
    """
    divisor = getattr(model, "pixel_divisor", 1.0)
    images = [x["image"].to(model.device, non_blocking=True).float() for x in batched_inputs]
    if divisor != 1.0:  # skipped otherwise: the default arithmetic stays exactly as it was
        images = [x / divisor for x in images]
    return [(x - model.pixel_mean) / model.pixel_std for x in images]


_TRAIN_MODES = ("joint", "rpn", "detector")


def run_proposal_generator(
    generator: nn.Module,
    batched_inputs: list[dict],
    images: ImageList,
    features: dict[str, torch.Tensor],
    gt_instances: list[Instances] | None,
) -> tuple[list[Instances], dict[str, torch.Tensor]]:
    """Call ``generator``, passing ``batched_inputs=`` to those with ``uses_batched_inputs = True``."""
    if getattr(generator, "uses_batched_inputs", False):
        return generator(images, features, gt_instances, batched_inputs=batched_inputs)
    return generator(images, features, gt_instances)


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """The two-stage detector.

    Calling convention (detectron2's): ``model(batched_inputs)`` where each input is a dict
    with ``"image"`` (uint8 or float Tensor[C, H, W] in ``input_format``), optional
    ``"height"``/``"width"`` (the size to report detections at, default the image's), and in
    training ``"instances"`` (ground truth). Training mode returns a dict of losses; eval
    mode a list of ``{"instances": Instances(pred_boxes, scores, pred_classes)}``.

    ``proposal_generator`` and ``roi_heads`` may be lazy configs: they are built here with
    ``input_shape=backbone.output_shape()`` (and the proposal generator with ``input_format``
    when it takes one). A proposal generator with ``uses_batched_inputs = True`` (selective
    search, precomputed proposals) is also passed ``batched_inputs=``.

    Args:
        pixel_mean, pixel_std: per-channel normalization in ``input_format`` order; kept as
            buffers so checkpoints carry them.
        pixel_divisor: images are divided by it before the normalization. 1 (the default) with
            mean and std on the 0-255 scale, or 255 with mean and std on the 0-1 scale, which is
            torchvision's arithmetic: the two agree only to float rounding (~5e-7), which a deep
            backbone grows to ~1e-3 in boxes and scores, so the torchvision configs use the latter.
        input_format: "BGR" or "RGB", the channel order the model expects.
        train_mode: which losses training computes: ``"joint"`` (RPN and detector, approximate
            joint training), ``"rpn"`` (the RoI heads do not run; steps 1 and 3 of the paper's
            alternating training) or ``"detector"`` (the proposal generator only proposes and its
            losses are left out; steps 2 and 4). Inference is the same in every mode.

    Attributes:
        proposal_features: ``None``, or a callable ``Tensor[N, 3, H, W] -> dict[str, Tensor]`` whose
            features the proposal generator reads instead of ``backbone``'s: step 2 of alternating
            training gives the RPN a separate, frozen backbone (see :mod:`rcnnzoo.engine.stages`).
            A plain attribute, not a submodule, so checkpoints hold only the model's own weights.
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
        train_mode: str = "joint",
        pixel_divisor: float = 1.0,
    ):
        super().__init__()
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
        if train_mode not in _TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {_TRAIN_MODES}, got {train_mode!r}")
        self.train_mode = train_mode
        self.proposal_features: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None
        self.backbone = backbone
        shape = backbone.output_shape()
        self.proposal_generator = build_part(proposal_generator, input_shape=shape, input_format=input_format)
        self.roi_heads = build_part(roi_heads, input_shape=shape)
        self.input_format = input_format
        register_normalization(self, pixel_mean, pixel_std, pixel_divisor)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: list[dict]) -> ImageList:
        """Normalize and pad the images into an ImageList (size divisible by the backbone's)."""
        return ImageList.from_tensors(normalize_images(self, batched_inputs), self.backbone.size_divisibility)

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        if not self.training:
            return self.inference(batched_inputs)
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("In training mode every input needs 'instances' (the ground truth)")
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)
        rpn_features = self._proposal_input(images, features)
        proposals, proposal_losses = run_proposal_generator(
            self.proposal_generator, batched_inputs, images, rpn_features, gt_instances
        )
        if self.train_mode == "rpn":
            return proposal_losses
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        if self.train_mode == "detector":
            return detector_losses
        return {**detector_losses, **proposal_losses}

    def _proposal_input(self, images: ImageList, features: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The features the proposal generator reads: ``features`` (the shared backbone's), or
        those of :attr:`proposal_features` when set."""
        return features if self.proposal_features is None else self.proposal_features(images.tensor)

    def inference(self, batched_inputs: list[dict], do_postprocess: bool = True) -> list[dict] | list[Instances]:
        """Detections for each input, rescaled to its ``height`` x ``width`` when ``do_postprocess``."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        rpn_features = self._proposal_input(images, features)
        proposals, _ = run_proposal_generator(
            self.proposal_generator, batched_inputs, images, rpn_features, None
        )
        results, _ = self.roi_heads(images, features, proposals, None)
        if not do_postprocess:
            return results
        out = []
        for result, inp, size in zip(results, batched_inputs, images.image_sizes):
            height = inp.get("height", size[0])
            width = inp.get("width", size[1])
            out.append({"instances": detector_postprocess(result, height, width)})
        return out
