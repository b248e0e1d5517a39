"""Run a trained model on plain images, one or many at a time, and name what it finds.

:class:`Predictor` builds the model of a lazy config, loads a checkpoint, and turns numpy
images into detections in each image's own pixel coordinates. It also reads the class names
and the dataset's category ids that the checkpoint carries (key ``"metadata"``, written by
training), so a picture or a COCO results file can name the classes without the dataset.

Batches and padding: the model pads the images of a batch to one size, and a two-stage
detector's output depends on that padding (the RPN places anchors over the padded area and the
convolutions see it at the borders). So that batching never changes a result, the predictor
by default puts only images with the same padded size (after the test-time resize) in one
batch: each image gets exactly the detections it would get alone. Folders of same-sized images
(video frames, most datasets) batch fully; ``group_by_size=False`` batches mixed sizes too,
faster on mixed folders but with slightly different detections near the image borders.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rcnnzoo.checkpoint import Checkpointer

__all__ = ["Predictor", "resolve_metadata"]

logger = logging.getLogger(__name__)


class _IdentityMap(dict):
    """``{}`` that maps every missing key to itself: category ids when the dataset's are unknown."""

    def __missing__(self, key: int) -> int:
        return key


def _test_dataset_names(cfg: Any) -> list[str]:
    from .defaults import cfg_get

    names = cfg_get(cfg, "dataloader.test.dataset.names", None)
    if names is None:
        return []
    return [names] if isinstance(names, str) else [str(n) for n in names]


def _normalized(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Plain types, int keys (a json round trip turns them into strings)."""
    out: dict[str, Any] = {}
    classes = metadata.get("thing_classes")
    if classes is not None:
        out["thing_classes"] = [str(c) for c in classes]
    mapping = metadata.get("thing_dataset_id_to_contiguous_id")
    if mapping:
        out["thing_dataset_id_to_contiguous_id"] = {int(k): int(v) for k, v in mapping.items()}
    names = metadata.get("dataset_names")
    if names is not None:
        out["dataset_names"] = [names] if isinstance(names, str) else [str(n) for n in names]
    return out


def resolve_metadata(checkpoint_metadata: Mapping[str, Any] | None, cfg: Any) -> tuple[dict[str, Any], str]:
    """The class names and category ids to report a model's detections with.

    In order of preference:

    1. ``checkpoint_metadata`` (the checkpoint's ``"metadata"`` entry, written by training), when
       it has ``thing_classes``;
    2. the ``MetadataCatalog`` entry of the first of the config's test datasets
       (``dataloader.test.dataset.names``) that is registered and has ``thing_classes`` without
       loading its data (a COCO json dataset learns its classes only when loaded, so is skipped;
       one that knows its classes but maps its category ids only when loaded, like the built-in
       shapes, gives labels as ids, with a warning);
    3. nothing: detections are reported with their class index.

    Returns:
        ``(metadata, source)``: metadata with any of ``thing_classes`` (list[str]),
        ``thing_dataset_id_to_contiguous_id`` ({dataset category id: contiguous label}) and
        ``dataset_names``; source is ``"checkpoint"``, ``"catalog:<name>"`` or ``"none"``.
    """
    if isinstance(checkpoint_metadata, Mapping) and checkpoint_metadata.get("thing_classes"):
        return _normalized(checkpoint_metadata), "checkpoint"
    names = _test_dataset_names(cfg)
    if names:
        from rcnnzoo.data import MetadataCatalog

        for name in names:
            if name not in MetadataCatalog or MetadataCatalog.get(name).get("thing_classes") is None:
                continue
            meta = MetadataCatalog.get(name)
            if not meta.get("thing_dataset_id_to_contiguous_id") and meta.get("json_file"):
                logger.warning(
                    f"Dataset {name!r} maps its category ids to labels only once loaded; reporting "
                    "labels 0..K-1 as category ids (a checkpoint saved by training carries the real ids)"
                )
            found = {
                "thing_classes": meta.get("thing_classes"),
                "thing_dataset_id_to_contiguous_id": meta.get("thing_dataset_id_to_contiguous_id"),
                "dataset_names": [name],
            }
            return _normalized(found), f"catalog:{name}"
    return {}, "none"


def _dataset_id_of(metadata: Mapping[str, Any]) -> dict[int, int]:
    """contiguous label -> dataset category id; an identity map when the dataset's ids are unknown."""
    mapping = metadata.get("thing_dataset_id_to_contiguous_id")
    if not mapping:
        return _IdentityMap()
    return {contiguous: dataset_id for dataset_id, contiguous in mapping.items()}


class Predictor:
    """A model from a lazy config, run on numpy images in batches; for scripts and tools.

    Example::

        predictor = Predictor(cfg, weights="output/model_final.pth", batch_size=4)
        outputs = predictor([image1, image2, image3])   # HWC uint8 in cfg.model.input_format
        instances = outputs[0]["instances"]             # in image1's pixel coordinates
        names = [predictor.thing_classes[c] for c in instances.pred_classes.tolist()]

    The model is in eval mode and runs without autograd, optimized for inference unless
    ``optimize=False`` (normalizations folded into the convs, channels-last). Results stay on ``device``.

    Attributes:
        model: the detector (eval mode) on ``device``.
        input_format: "BGR" or "RGB", the channel order the images must have.
        metadata: ``{"thing_classes", "thing_dataset_id_to_contiguous_id", "dataset_names"}``
            (any may be absent) from the checkpoint, else the config's test dataset (see
            :func:`resolve_metadata`); ``metadata_source`` says which.
        thing_classes: class names indexed by the contiguous label, or ``None`` when unknown.
        dataset_id_of: contiguous label -> the dataset's category id (``dataset_id_of[label]``);
            an identity mapping when the checkpoint and config do not say.
        load_report: what :meth:`Checkpointer.load` did (``LoadReport``).
    """

    def __init__(
        self,
        cfg: Any,
        weights: str | None = None,
        *,
        batch_size: int = 1,
        device: str | torch.device | None = None,
        group_by_size: bool = True,
        optimize: bool = True,
    ) -> None:
        """
        Args:
            cfg: a lazy config with ``model`` (and ``model.input_format``),
                ``dataloader.test.mapper.augmentations`` (the test-time resize) and optionally
                ``train.device`` and ``dataloader.test.dataset.names``.
            weights: a checkpoint; ``None`` uses ``cfg.train.init_checkpoint``; ``""`` loads nothing.
            batch_size: images per forward pass (at most).
            device: where to run; ``None`` uses ``cfg.train.device`` ("auto": CUDA when available).
            group_by_size: batch only images with the same padded size, so that results do not
                depend on the batch (see the module docstring).
            optimize: after loading, fold the model's normalizations into its convs and run it
                channels-last (:func:`rcnnzoo.modeling.optimize_for_inference`): same detections
                up to float rounding, about 1.3x faster on the CPU; ``self.model`` then no longer
                has its config's state dict keys.
        """
        from rcnnzoo.config import instantiate

        from .defaults import cfg_get, resolve_device

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.cfg = cfg
        self.batch_size = int(batch_size)
        self.group_by_size = group_by_size
        self.device = (
            resolve_device(cfg_get(cfg, "train.device", None)) if device is None else torch.device(device)
        )
        self.model = instantiate(cfg.model).to(self.device).eval()
        self.input_format = getattr(self.model, "input_format", None) or cfg_get(
            cfg, "model.input_format", "BGR"
        )
        if weights is None:
            weights = cfg_get(cfg, "train.init_checkpoint", "")
        self.load_report = Checkpointer(self.model).load(weights or "")
        if optimize:
            from rcnnzoo.modeling.inference_optimization import optimize_for_inference

            optimize_for_inference(self.model)
        self.augmentations = [
            instantiate(a) for a in cfg_get(cfg, "dataloader.test.mapper.augmentations", [])
        ]
        self.metadata, self.metadata_source = resolve_metadata(self.load_report.extra.get("metadata"), cfg)
        self.thing_classes: list[str] | None = self.metadata.get("thing_classes")
        self.dataset_id_of: dict[int, int] = _dataset_id_of(self.metadata)
        # the built model's count: the config may compute it (e.g. L(num_classes_of)(...))
        self._check_num_classes(getattr(getattr(self.model, "roi_heads", None), "num_classes", None))

    def _check_num_classes(self, num_classes: int | None) -> None:
        if self.thing_classes is None:
            logger.info("No class names in the checkpoint or the config's test dataset; using class indices")
            return
        logger.info(f"Class names from {self.metadata_source}: {self.thing_classes}")
        if num_classes is not None and int(num_classes) != len(self.thing_classes):
            logger.warning(
                f"The model predicts {num_classes} classes but the names from {self.metadata_source} "
                f"list {len(self.thing_classes)}; labels may be misnamed"
            )

    # ----------------------------------------------------------------------------- running

    def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> dict[str, Any] | list[dict[str, Any]]:
        """Detect objects in one image or a list of images.

        Args:
            images: an ndarray[H, W, C] uint8 image, or a list of them (sizes may differ), with
                channels in ``input_format``.

        Returns:
            For one image ``{"instances": Instances}``; for a list, one such dict per image in
            the same order. Boxes (and masks) are in each input image's pixel coordinates.
        """
        single = isinstance(images, np.ndarray) and images.ndim != 4
        batch = [images] if single else list(images)
        inputs = [self._prepare(image) for image in batch]
        outputs: list[dict[str, Any]] = [{} for _ in inputs]
        with torch.no_grad():
            for indices in self._batches(inputs):
                chunk = [{**inputs[i], "image": inputs[i]["image"].to(self.device)} for i in indices]
                for i, output in zip(indices, self.model(chunk)):
                    outputs[i] = output
        return outputs[0] if single else outputs

    def _prepare(self, image: np.ndarray) -> dict[str, Any]:
        """The model input of one image: resized, Tensor[C, H', W'] uint8 (CPU), original size."""
        from rcnnzoo.data.transforms import apply_augmentations

        if not isinstance(image, np.ndarray) or image.ndim != 3:
            shape = getattr(image, "shape", None)
            raise ValueError(f"Predictor expects HWC numpy images, got {type(image).__name__} {shape}")
        height, width = image.shape[:2]
        resized, _ = apply_augmentations(self.augmentations, image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    def _padded_size(self, image: torch.Tensor) -> tuple[int, int]:
        """The size the model pads ``image`` (Tensor[C, H, W]) to on its own."""
        d = int(getattr(getattr(self.model, "backbone", None), "size_divisibility", 0) or 0)
        h, w = image.shape[-2:]
        if d > 1:
            h, w = (h + d - 1) // d * d, (w + d - 1) // d * d
        return int(h), int(w)

    def _batches(self, inputs: list[dict[str, Any]]) -> list[list[int]]:
        """Indices of ``inputs`` per forward pass, at most ``batch_size`` each.

        With ``group_by_size``, images of one padded size form their own batches (groups in
        order of first appearance), else batches follow the input order.
        """
        groups: dict[Any, list[int]] = {}
        for i, inp in enumerate(inputs):
            key = self._padded_size(inp["image"]) if self.group_by_size else None
            groups.setdefault(key, []).append(i)
        n = self.batch_size
        return [group[k : k + n] for group in groups.values() for k in range(0, len(group), n)]
