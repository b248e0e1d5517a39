"""R-CNN after fine-tuning, as ``run`` stages of ``train.stages``: region features cached for the
training set, per-class linear SVMs with hard negative mining, class-specific box regressors
(Girshick et al. 2014, §2.3 and appendices B and C).

The paper trains in three steps, each from the previous one's network: (1) fine-tune the CNN on
warped regions with a softmax (an ordinary training stage of :class:`~rcnnzoo.modeling.RCNN`
with a softmax predictor); (2) compute the fine-tuned features of every training region once,
cache them, and fit one linear SVM per class on the cache (:class:`TrainSVMs`); (3) fit one
linear box regressor per class on the cached pool5 features (:class:`FitBoxRegressors`)::

    model = L(RCNN)(..., box_predictor=L(LinearSVMOutputLayers)(), box_regression="pool5")
    train.stages = [
        dict(name="1_finetune", share=1.0,
             replace={"model.box_predictor": L(FastRCNNOutputLayers)(loss_weight={"loss_box_reg": 0.0})}),
        dict(name="2_svms", run=L(TrainSVMs)(C=0.001)),
        dict(name="3_box_regressors", run=L(FitBoxRegressors)(features_from="2_svms", lam=1000.0)),
    ]

The cache (``<stage output_dir>/region_features.pt``, written atomically) holds, for each
training image as the test mapper reads it (no augmentation), its ground-truth boxes and every
proposal: their box head outputs (fc7; the SVMs' input), labels (the class for a ground-truth
box, K for a proposal) and best IoU with each class; and, for the proposals overlapping a
ground-truth box by ``regression_iou_thresh`` or more, their pool5 features, boxes and that box
(the regressors' input). It is keyed by the weights of the backbone and box head, the crop
settings, the data and the :class:`CacheOptions`: a stage that finds a cache with the same key (on
``--resume``, or a later stage's ``features_from`` with the same ``cache`` options) reads it
instead of recomputing.

R-CNN scales the features to a mean L2 norm of 20, the scale its SVM C and ridge lambda are
chosen for. Scaling the features by s is the same problem as keeping them and using C s^2 (SVM)
or lambda / s^2 (ridge), with weights that apply to the unscaled features: that is what is
solved here, so that the cache is never copied.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torchvision.ops import box_iou

from rcnnzoo.checkpoint import atomic_write
from rcnnzoo.modeling.poolers import convert_boxes_to_rois
from rcnnzoo.modeling.roi_heads.ridge_box_regression import fit_class_box_regressors
from rcnnzoo.modeling.roi_heads.svm_head import class_max_ious
from rcnnzoo.modeling.roi_heads.svm_training import train_linear_svms
from rcnnzoo.structures import Boxes
from rcnnzoo.utils.comm import all_gather, is_main_process, synchronize

from .defaults import cfg_get

__all__ = [
    "CACHE_FILE",
    "CacheOptions",
    "FitBoxRegressors",
    "RegionFeatures",
    "TrainSVMs",
    "cache_region_features",
    "feature_scale",
    "training_images_loader",
]

logger = logging.getLogger(__name__)

CACHE_FILE = "region_features.pt"


@dataclass
class RegionFeatures:
    """Cached features of the training regions (see the module docstring).

    Attributes:
        features (Tensor[N, D]): box head output (fc7) of each region: ground-truth boxes and proposals.
        labels (Tensor[N] int64): class in [0, K) of a ground-truth box, K for a proposal.
        class_ious (Tensor[N, K]): each region's best IoU with a ground-truth box of each class.
        reg_features (Tensor[M, P]): flattened pool5 feature of each regression sample, a proposal
            overlapping a ground-truth box by ``regression_iou_thresh`` or more.
        reg_proposals, reg_gt_boxes (Tensor[M, 4]): that proposal and the box it overlaps most.
        reg_classes (Tensor[M] int64): that box's class.
        num_images: the images the regions come from.
    """

    features: torch.Tensor
    labels: torch.Tensor
    class_ious: torch.Tensor
    reg_features: torch.Tensor
    reg_proposals: torch.Tensor
    reg_gt_boxes: torch.Tensor
    reg_classes: torch.Tensor
    num_images: int

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "num_images"}

    @staticmethod
    def cat(parts: list[RegionFeatures]) -> RegionFeatures:
        """The regions of all ``parts``, in order."""
        merged = {k: torch.cat([p.tensors()[k] for p in parts]) for k in parts[0].tensors()}
        return RegionFeatures(**merged, num_images=sum(p.num_images for p in parts))


def training_images_loader(
    cfg: Any, *, max_images: int | None = None, batch_size: int = 1, num_workers: int = 0
) -> tuple[Any, int]:
    """The training set (``dataloader.train.dataset``), once, in order, as the test mapper reads
    images (``dataloader.test.mapper``: no augmentation) but with the ground truth.

    Returns:
        (a loader yielding ``list[dict]`` model inputs with ``"instances"``, the number of images).
    """
    from rcnnzoo.config import instantiate
    from rcnnzoo.data import build_detection_test_loader, get_detection_dataset_dicts

    dicts = instantiate(cfg.dataloader.train.dataset)
    if isinstance(dicts, str) or (dicts and isinstance(dicts[0], str)):  # dataset names
        dicts = get_detection_dataset_dicts(dicts)
    if max_images is not None:
        dicts = dicts[:max_images]
    mapper_cfg = copy.deepcopy(cfg.dataloader.test.mapper)
    mapper_cfg.is_train = True  # keeps the annotations
    loader = build_detection_test_loader(
        dataset=dicts, mapper=instantiate(mapper_cfg), batch_size=batch_size, num_workers=num_workers
    )
    return loader, len(dicts)


@dataclass
class CacheOptions:
    """Which regions the cache keeps, and how.

    Attributes:
        max_images: cache the first ``max_images`` training images only (None: all, the paper's).
        regression_iou_thresh: the IoU with a ground-truth box that makes a proposal a regression
            sample (R-CNN: 0.6).
        background_per_image: keep at most this many of an image's background proposals (best
            IoU with every ground-truth box below ``background_iou_thresh``), drawn at random;
            None keeps them all (the paper's). The others (near an object) are always kept: they
            are the hard negatives of the other classes.
        background_iou_thresh: see ``background_per_image`` (R-CNN's SVM negatives: below 0.3).
        dtype: of the cached features ("float32", or "float16" to halve the memory).
        seed: of the background draw.
    """

    max_images: int | None = None
    regression_iou_thresh: float = 0.6
    background_per_image: int | None = None
    background_iou_thresh: float = 0.3
    dtype: str = "float32"
    seed: int = 0


@torch.no_grad()
def cache_region_features(
    model: nn.Module, data_loader: Any, options: CacheOptions | None = None
) -> RegionFeatures:
    """The features of the ground-truth boxes and proposals of the images of ``data_loader``.

    Args:
        model: an :class:`~rcnnzoo.modeling.RCNN`; run in eval mode (its proposals are those of
            inference), its mode restored after.
        data_loader: yields ``list[dict]`` model inputs with ``"instances"``.
        options: which regions to keep (default: all, the paper's).
    Returns:
        the regions on the CPU (see :class:`RegionFeatures`).
    """
    options = options or CacheOptions()
    if options.dtype not in ("float32", "float16"):
        raise ValueError(f"CacheOptions.dtype must be 'float32' or 'float16', got {options.dtype!r}")
    generator = torch.Generator().manual_seed(options.seed)
    was_training = model.training
    model.eval()
    parts = []
    try:
        for batched_inputs in data_loader:
            parts.append(_cache_batch(model, batched_inputs, options, generator))
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("cache_region_features: the data loader gave no images")
    return RegionFeatures.cat(parts)


def _cache_batch(
    model: nn.Module, batched_inputs: list[dict], options: CacheOptions, generator: torch.Generator
) -> RegionFeatures:
    images = model.preprocess_image(batched_inputs)
    gts = [x["instances"].to(model.device) for x in batched_inputs]
    proposals = model.propose(batched_inputs, images)
    num_classes = model.num_classes
    regions, labels, class_ious, is_reg, reg_gt, reg_classes = [], [], [], [], [], []
    for gt, props in zip(gts, proposals):
        gt_boxes, gt_classes = gt.gt_boxes.tensor, gt.gt_classes
        boxes, best, match = _kept_proposals(props.proposal_boxes.tensor, gt_boxes, options, generator)
        regions.append(Boxes(torch.cat([gt_boxes, boxes])))
        labels.append(torch.cat([gt_classes, gt_classes.new_full((len(boxes),), num_classes)]))
        class_ious.append(class_max_ious(regions[-1].tensor, gt_boxes, gt_classes, num_classes))
        keep = best >= options.regression_iou_thresh  # the ground-truth boxes are not regression samples
        is_reg.append(torch.cat([keep.new_zeros(len(gt_boxes)), keep]))
        reg_gt.append(gt_boxes[match[keep]])
        reg_classes.append(gt_classes[match[keep]])
    rois = convert_boxes_to_rois(regions)
    is_reg_all = torch.cat(is_reg)
    dtype = getattr(torch, options.dtype)
    heads = [torch.zeros(0, model.box_head.output_shape.channels, dtype=dtype)]
    pooled = [torch.zeros(0, model.pooled_dim, dtype=dtype)]
    for start in range(0, len(rois), model.crop_batch_size):
        chunk = slice(start, start + model.crop_batch_size)
        chunk_pooled, chunk_head = model.region_features(images.tensor, rois[chunk])
        heads.append(chunk_head.to("cpu", dtype))
        pooled.append(chunk_pooled[is_reg_all[chunk]].to("cpu", dtype))
    return RegionFeatures(
        features=torch.cat(heads),
        labels=torch.cat(labels).cpu(),
        class_ious=torch.cat(class_ious).float().cpu(),
        reg_features=torch.cat(pooled),
        reg_proposals=rois[is_reg_all, 1:].float().cpu(),
        reg_gt_boxes=torch.cat(reg_gt).float().cpu(),
        reg_classes=torch.cat(reg_classes).cpu(),
        num_images=len(batched_inputs),
    )


def _kept_proposals(
    boxes: torch.Tensor, gt_boxes: torch.Tensor, options: CacheOptions, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The proposals (Tensor[P, 4]) the cache keeps, each one's best IoU with the ground truth
    (Tensor[P]) and the index of that box (Tensor[P] int64; 0 without ground truth)."""
    if len(gt_boxes):
        best, match = box_iou(boxes, gt_boxes).max(dim=1)
    else:
        best, match = (
            boxes.new_zeros(len(boxes)),
            torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device),
        )
    limit = options.background_per_image
    background = (best < options.background_iou_thresh).nonzero().squeeze(1)
    if limit is None or len(background) <= limit:
        return boxes, best, match
    order = torch.randperm(len(background), generator=generator)[limit:].to(boxes.device)
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    keep[background[order]] = False
    return boxes[keep], best[keep], match[keep]


def feature_scale(features: torch.Tensor, target_norm: float) -> float:
    """The factor that brings the mean L2 norm of ``features`` (Tensor[N, D]) to ``target_norm``
    (R-CNN: 20, the scale its SVM C and ridge lambda are chosen for); 1 without features."""
    if len(features) == 0:
        return 1.0
    # in chunks: a float64 copy of a whole VOC cache would not fit in memory
    norms = torch.cat([chunk.double().norm(dim=1) for chunk in features.split(65536)])
    mean_norm = float(norms.mean())
    return target_norm / mean_norm if mean_norm > 0 else 1.0


def _fingerprint(model: nn.Module) -> str:
    """A hash of the weights and settings that the cached features depend on."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(("backbone.", "box_head.")) or name in ("pixel_mean", "pixel_std"):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    settings = (
        model.in_feature,
        model.input_size,
        model.context_padding,
        model.pooled_size,
        model.input_format,
    )
    digest.update(repr(settings).encode())
    return digest.hexdigest()


class _CachedFeaturesStep:
    """What both R-CNN stages share: the region feature cache they read, and how to make it.

    Args:
        cache: :class:`CacheOptions` fields, e.g. ``dict(background_per_image=500)``.
        batch_size, num_workers: of the loader that reads the training images.
    """

    def __init__(self, *, cache: dict[str, Any] | None = None, batch_size: int = 1, num_workers: int = 0):
        self.cache_options = CacheOptions(**(cache or {}))
        self.batch_size = batch_size
        self.num_workers = num_workers

    def _key(self, cfg: Any, model: nn.Module) -> dict[str, Any]:
        dataset = cfg.dataloader.train.dataset
        names = cfg_get(dataset, "names", None)
        files = cfg_get(dataset, "proposal_files", None)
        options = asdict(self.cache_options)
        return {
            "weights": _fingerprint(model),
            "datasets": [str(n) for n in ([names] if isinstance(names, str) else list(names or []))],
            "proposal_files": [str(f) for f in ([files] if isinstance(files, str) else list(files or []))],
            "mapper": str(cfg_get(cfg, "dataloader.test.mapper", None)),
            **{k: (-1 if v is None else v) for k, v in options.items()},
        }

    def cached_features(self, cfg: Any, model: nn.Module, paths: list[str]) -> RegionFeatures:
        """The first of ``paths`` that holds a cache with this model's key, else a new cache
        computed now and written to ``paths[-1]``."""
        key = self._key(cfg, model)
        for path in paths:
            cached = _read_cache(path, key)
            if cached is not None:
                logger.info(f"Region features of {cached.num_images} images read from {path}")
                return cached
        loader, num_images = training_images_loader(
            cfg,
            max_images=self.cache_options.max_images,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
        )
        logger.info(f"Caching the region features of {num_images} training images to {paths[-1]}")
        local = cache_region_features(model, loader, self.cache_options)
        cache = RegionFeatures.cat(all_gather(local))  # each process cached its share of the images
        if is_main_process():
            os.makedirs(os.path.dirname(os.path.abspath(paths[-1])), exist_ok=True)
            payload = {"key": key, "num_images": cache.num_images, **cache.tensors()}
            atomic_write(paths[-1], lambda f: torch.save(payload, f))
        synchronize()
        num_gt = int((cache.labels < model.num_classes).sum())
        logger.info(
            f"Cached {len(cache.features)} regions ({num_gt} ground-truth boxes) and "
            f"{len(cache.reg_features)} regression samples"
        )
        return cache


def _read_cache(path: str, key: dict[str, Any]) -> RegionFeatures | None:
    if not os.path.isfile(path):
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a cache is only a shortcut: recompute it
        logger.warning(f"Cannot read the region feature cache {path} ({type(e).__name__}: {e}); recomputing")
        return None
    if payload.get("key") != key:
        logger.info(f"{path} holds the features of other weights or data; not used")
        return None
    return RegionFeatures(**{f.name: payload[f.name] for f in fields(RegionFeatures)})


class TrainSVMs(_CachedFeaturesStep):
    """R-CNN's stage 2: one linear SVM per class on the cached fc7 features, with hard negative
    mining (:func:`~rcnnzoo.modeling.roi_heads.svm_training.train_linear_svms`), installed in the
    model's :class:`~rcnnzoo.modeling.roi_heads.LinearSVMOutputLayers` (``load_svms``).

    Positives of class k are its ground-truth boxes; negatives the proposals whose IoU with every
    box of class k is below ``negative_iou_thresh`` (0.3); C is for features scaled to a mean norm
    of ``feature_norm`` (20; see the module docstring).

    Args:
        C, loss_type, positive_weight, hard_negative_rounds, initial_negatives,
            negative_iou_thresh, epochs: see ``train_linear_svms`` (R-CNN: C = 0.001, hinge loss,
            positives weighted 2).
        feature_norm: see :func:`feature_scale`.
        seed: of the first random cache of negatives.
        cache, batch_size, num_workers: of the feature cache (:class:`_CachedFeaturesStep`).
    """

    def __init__(
        self,
        *,
        C: float = 1e-3,
        loss_type: str = "hinge",
        positive_weight: float = 2.0,
        hard_negative_rounds: int = 3,
        initial_negatives: int = 5000,
        negative_iou_thresh: float = 0.3,
        epochs: int = 100,
        feature_norm: float = 20.0,
        seed: int = 0,
        **cache_options: Any,
    ):
        super().__init__(**cache_options)
        self.svm_options = {
            "C": C,
            "loss_type": loss_type,
            "positive_weight": positive_weight,
            "hard_negative_rounds": hard_negative_rounds,
            "initial_negatives": initial_negatives,
            "negative_iou_thresh": negative_iou_thresh,
            "epochs": epochs,
        }
        self.feature_norm = feature_norm
        self.seed = seed

    def __call__(self, cfg: Any, model: nn.Module) -> dict[str, Any]:
        """Fit the SVMs on ``model``'s features of the training set and install them in ``model``.

        Args:
            cfg: the stage's config (``dataloader.train.dataset``, ``dataloader.test.mapper``,
                ``train.output_dir``, where the cache goes).
            model: an :class:`~rcnnzoo.modeling.RCNN` whose predictor has ``load_svms``.
        Returns:
            a summary: regions, positives per class, feature scale.
        """
        if not hasattr(model.box_predictor, "load_svms"):
            raise TypeError(
                f"TrainSVMs installs SVMs in a LinearSVMOutputLayers predictor; this model's is "
                f"{type(model.box_predictor).__name__} (set the stage's model, or cfg.model.box_predictor)"
            )
        cache = self.cached_features(cfg, model, [os.path.join(cfg_get(cfg, "train.output_dir"), CACHE_FILE)])
        scale = feature_scale(cache.features, self.feature_norm)
        options = {**self.svm_options, "C": self.svm_options["C"] * scale**2}  # = features scaled by `scale`
        generator = torch.Generator().manual_seed(self.seed)
        weights, biases = train_linear_svms(
            cache.features, cache.labels, cache.class_ious, generator=generator, **options
        )
        device = model.box_predictor.svm.weight.device
        model.box_predictor.load_svms(weights.to(device, torch.float32), biases.to(device, torch.float32))
        positives = torch.bincount(cache.labels, minlength=model.num_classes + 1)[: model.num_classes]
        return {"regions": len(cache.features), "positives": positives.tolist(), "feature_scale": scale}


class FitBoxRegressors(_CachedFeaturesStep):
    """R-CNN's stage 3: class-specific linear box regressors on the cached pool5 features, fitted
    by ridge regression (:func:`~rcnnzoo.modeling.roi_heads.ridge_box_regression.fit_class_box_regressors`)
    and installed with :meth:`RCNN.load_box_regressors <rcnnzoo.modeling.RCNN.load_box_regressors>`.

    The samples are the proposals that overlap a ground-truth box by ``regression_iou_thresh``
    (0.6) or more, the targets the deltas to that box, lambda for features scaled to a mean norm of
    ``feature_norm`` (20; see the module docstring).

    Args:
        features_from: the name of an earlier stage whose cache to read (e.g. "2_svms"), when it
            holds this model's features with the same ``cache`` options; else (or None) the cache
            is computed in this stage.
        lam: the ridge regularisation (R-CNN: 1000).
        feature_norm: see :func:`feature_scale`.
        cache, batch_size, num_workers: of the feature cache (:class:`_CachedFeaturesStep`).
    """

    def __init__(
        self,
        *,
        features_from: str | None = None,
        lam: float = 1000.0,
        feature_norm: float = 20.0,
        **cache_options: Any,
    ):
        super().__init__(**cache_options)
        self.features_from = features_from
        self.lam = lam
        self.feature_norm = feature_norm

    def __call__(self, cfg: Any, model: nn.Module) -> dict[str, Any]:
        """Fit the regressors on ``model``'s pool5 features of the training set and install them.

        Args:
            cfg: the stage's config, as for :class:`TrainSVMs`.
            model: an :class:`~rcnnzoo.modeling.RCNN` with ``box_regression="pool5"``.
        Returns:
            a summary: samples per class, feature scale.
        """
        if getattr(model, "pool5_bbox_pred", None) is None:
            raise TypeError("FitBoxRegressors needs an RCNN model with box_regression='pool5'")
        stage_dir = os.path.normpath(cfg_get(cfg, "train.output_dir"))
        paths = [os.path.join(stage_dir, CACHE_FILE)]
        if self.features_from:
            paths.insert(0, os.path.join(os.path.dirname(stage_dir), self.features_from, CACHE_FILE))
        cache = self.cached_features(cfg, model, paths)
        scale = feature_scale(cache.reg_features, self.feature_norm)
        weights, biases = fit_class_box_regressors(
            cache.reg_features,
            cache.reg_proposals,
            cache.reg_gt_boxes,
            cache.reg_classes,
            model.num_classes,
            model.box_predictor.box2box_transform,
            self.lam / scale**2,  # = features scaled by `scale`
        )
        device = model.pool5_bbox_pred.weight.device
        model.load_box_regressors(weights.to(device), biases.to(device))
        samples = torch.bincount(cache.reg_classes, minlength=model.num_classes)
        return {"regression_samples": samples.tolist(), "feature_scale": scale}
