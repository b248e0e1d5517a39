"""Shared helpers for the torchvision parity tests: random-weight models and identical inputs."""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.ops import box_iou

from rcnnzoo.config import instantiate
from rcnnzoo.layers import FrozenBatchNorm2d
from rcnnzoo.model_zoo import get_config
from rcnnzoo.model_zoo.converters import TORCHVISION_ARCHS, convert_torchvision_state_dict

MIN_SIZE, MAX_SIZE = 320, 512
SCORE_THRESH = 0.02

# torchvision's published weights have FrozenBN in these backbones (v2 keeps nn.BatchNorm2d)
FROZEN_BN_ARCHS = ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn")


def _randomize_bn(module: nn.Module) -> list[nn.BatchNorm2d]:
    """Random affine parameters for every BatchNorm2d of ``module``, statistics reset to be measured."""
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: the statistics of the calibration batch
    return bns


@torch.no_grad()
def _calibrate(module: nn.Module, *inputs) -> None:
    """Measure ``module``'s BatchNorm statistics on ``inputs`` (one train-mode forward), then eval."""
    if _randomize_bn(module):
        module.train()
        module(*inputs)
    module.eval()


def build_torchvision(arch: str, seed: int = 0, **kwargs) -> nn.Module:
    """torchvision's ``arch`` with random weights made to behave like trained ones.

    Built without weights, BatchNorm layers are at their initial statistics (identity) and
    activations grow block after block; every BN (backbone, and for v2 also FPN, box and mask
    heads) gets random affine parameters and its running statistics measured on random images
    (the heads' on random RoIs), so every layer's output is in a reasonable range. The backbone
    BN is then frozen where torchvision's published COCO models have FrozenBN (v1, MobileNetV3).
    With these, torchvision's default classifier init gives top scores spread over 0.1 .. 0.8.
    ``kwargs`` go to the builder (e.g. ``rpn_post_nms_top_n_test``).
    """
    torch.manual_seed(seed)
    model = getattr(torchvision.models.detection, arch)(
        weights=None,
        weights_backbone=None,
        num_classes=91,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        box_score_thresh=SCORE_THRESH,
        **kwargs,
    )
    images = torch.randn(2, 3, 160, 224)
    _calibrate(model.backbone.body, images)
    _calibrate(model.backbone.fpn, model.backbone.body(images))
    features = model.backbone(images)
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, 64, 2, generator=gen) * torch.tensor([160.0, 112.0])
    boxes = [torch.cat([p, p + 16 + torch.rand(64, 2, generator=gen) * 96], dim=1) for p in xy]
    sizes = [(160, 224)] * 2
    _calibrate(model.roi_heads.box_head, model.roi_heads.box_roi_pool(features, boxes, sizes))
    if getattr(model.roi_heads, "mask_head", None) is not None:
        _calibrate(model.roi_heads.mask_head, model.roi_heads.mask_roi_pool(features, boxes, sizes))
    if arch in FROZEN_BN_ARCHS:
        model.backbone.body = FrozenBatchNorm2d.convert_frozen_batchnorm(model.backbone.body)
    with torch.no_grad():
        # objectness logits come out spread around 0 (std ~1.5); shifted down, most of the
        # anchors falls under an RPN score threshold (MobileNetV3's 0.05), which then matters
        # (a shift of every logit changes no ranking, so it does not matter to the other archs)
        model.rpn.head.cls_logits.bias.fill_(-4.0)
    return model.eval()


def build_converted(arch: str, tv_model: nn.Module, post_nms_topk: int | None = None) -> nn.Module:
    """The rcnnzoo model of ``arch``'s config with ``tv_model``'s converted weights (strictly loaded).

    ``post_nms_topk`` overrides the RPN's test-time proposals per image (torchvision's
    ``rpn_post_nms_top_n_test``), to keep the heavy v2 heads quick.
    """
    cfg = get_config(TORCHVISION_ARCHS[arch])
    cfg.model.roi_heads.box_predictor.test_score_thresh = SCORE_THRESH
    if post_nms_topk is not None:
        cfg.model.proposal_generator.post_nms_topk = (2000, post_nms_topk)
    model = instantiate(cfg.model)
    model.load_state_dict(convert_torchvision_state_dict(tv_model.state_dict(), arch), strict=True)
    return model.eval()


def random_images(seed: int = 1) -> list[torch.Tensor]:
    """Two uint8 RGB images, Tensor[3, H, W], that torchvision's resize leaves at their size.

    Padded together to 320 x 480: 15 columns at stride 32, so p6 has 8 columns, 60 px apart in
    torchvision's anchors (480 // 8), which the configs' ``strides_from_grid`` reproduces.
    """
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 256, (3, 320, 480), dtype=torch.uint8, generator=gen),
        torch.randint(0, 256, (3, 320, 416), dtype=torch.uint8, generator=gen),
    ]


def match_detections(tv: dict, ours) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (i, j): torchvision detection i and ours j of the same class, greedily by box IoU."""
    labels = ours.pred_classes + 1  # torchvision's label c is rcnnzoo's class c - 1
    iou = box_iou(tv["boxes"], ours.pred_boxes.tensor)
    iou[tv["labels"][:, None] != labels[None, :]] = 0
    pairs, used = [], set()
    for i in range(len(tv["boxes"])):
        j = int(iou[i].argmax()) if iou.shape[1] else -1
        if j >= 0 and iou[i, j] > 0.99 and j not in used:
            pairs.append((i, j))
            used.add(j)
    pairs_t = torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    return pairs_t[:, 0], pairs_t[:, 1]


@torch.no_grad()
def run_both(tv_model: nn.Module, ours: nn.Module, images: list[torch.Tensor]) -> tuple[list[dict], list]:
    """Detections of both models on ``images``, in the resized input frame, before any mask pasting:
    torchvision's dicts (``boxes``, ``scores``, ``labels``, ``masks`` Tensor[R, 1, 28, 28]) and
    rcnnzoo's Instances (``pred_masks`` the same 28 x 28 probabilities)."""
    image_list, _ = tv_model.transform([im.float() / 255 for im in images])
    features = tv_model.backbone(image_list.tensors)
    proposals, _ = tv_model.rpn(image_list, features)
    expected, _ = tv_model.roi_heads(features, proposals, image_list.image_sizes)
    got = ours.inference([{"image": im} for im in images], do_postprocess=False)
    return expected, got


def max_relative_differences(expected: list[dict], got: list) -> dict[str, float]:
    """Over all matched detections: the largest ``|ours - tv| / |tv|`` of boxes, scores (and masks,
    relative to 1: they are probabilities), and the fraction of torchvision's detections matched."""
    out = {"boxes": 0.0, "scores": 0.0, "matched": 1.0}
    for tv, inst in zip(expected, got):
        i, j = match_detections(tv, inst)
        out["matched"] = min(out["matched"], len(i) / max(len(tv["boxes"]), 1))
        if not len(i):
            continue
        box_tv, box = tv["boxes"][i], inst.pred_boxes.tensor[j]
        out["boxes"] = max(out["boxes"], ((box - box_tv).abs() / box_tv.abs().clamp(min=1)).max().item())
        out["scores"] = max(
            out["scores"], ((inst.scores[j] - tv["scores"][i]).abs() / tv["scores"][i]).max().item()
        )
        if "masks" in tv:
            out["masks"] = max(
                out.get("masks", 0.0), (inst.pred_masks[j] - tv["masks"][i]).abs().max().item()
            )
    return out
