"""torchvision -> rcnnzoo conversion: the converted model gives torchvision's detections."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops import box_iou

from rcnnzoo.model_zoo.converters import ConversionError, convert_torchvision_state_dict

from .torchvision_parity import build_converted, build_torchvision, random_images

ARCH = "fasterrcnn_resnet50_fpn"


def _match(tv: dict, ours) -> tuple[torch.Tensor, torch.Tensor]:
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


def test_fasterrcnn_resnet50_fpn_detections_match_torchvision():
    tv_model = build_torchvision(ARCH)
    ours = build_converted(ARCH, tv_model)
    images = random_images()
    with torch.no_grad():
        expected = tv_model([im.float() / 255 for im in images])
        got = ours([{"image": im} for im in images])

    # Normalizing on the 0-255 scale (rcnnzoo) instead of 0-1 (torchvision) changes the input by
    # ~5e-7, which ResNet-50 grows to ~4e-6 relative; fed the same normalized tensor, the backbones
    # agree bit for bit, so every difference below is that rounding.
    with torch.no_grad():
        normalized = tv_model.transform([im.float() / 255 for im in images])[0].tensors
        for a, b in zip(tv_model.backbone(normalized).values(), ours.backbone(normalized).values()):
            assert torch.equal(a, b)

    for tv, out in zip(expected, got):
        inst = out["instances"]
        assert len(tv["boxes"]) == len(inst) == 100  # many detections compared, not a handful
        i, j = _match(tv, inst)
        # A candidate whose score ties another's to ~1e-6 (e.g. at RPN's per-level top-1000 cut)
        # may fall either way under float noise and change a few detections near the end.
        assert len(i) >= 0.95 * len(tv["boxes"])
        torch.testing.assert_close(inst.pred_boxes.tensor[j], tv["boxes"][i], rtol=1e-4, atol=1e-2)
        torch.testing.assert_close(inst.scores[j], tv["scores"][i], rtol=5e-4, atol=1e-5)
        # the matched detections come in the same order (both sorted by score)
        assert torch.equal(j.sort().values, j)


def test_every_key_maps_and_loads_strictly_including_plain_batchnorm():
    """Built without weights, torchvision's backbone has BatchNorm2d (with num_batches_tracked)."""
    tv_model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    state = tv_model.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in state)
    converted = convert_torchvision_state_dict(state, ARCH)
    assert not any(k.endswith("num_batches_tracked") for k in converted)

    from rcnnzoo.config import instantiate
    from rcnnzoo.model_zoo import get_config
    from rcnnzoo.model_zoo.converters import TORCHVISION_ARCHS

    model = instantiate(get_config(TORCHVISION_ARCHS[ARCH]).model)
    model.load_state_dict(converted, strict=True)


def test_class_order_moves_background_last():
    w = torch.arange(4.0)[:, None].expand(4, 2)  # classes: bg, c1, c2, c3
    deltas = torch.arange(16.0)[:, None].expand(16, 2)
    converted = convert_torchvision_state_dict(
        {"roi_heads.box_predictor.cls_score.weight": w, "roi_heads.box_predictor.bbox_pred.weight": deltas},
        ARCH,
    )
    assert converted["roi_heads.box_predictor.cls_score.weight"][:, 0].tolist() == [1, 2, 3, 0]
    assert converted["roi_heads.box_predictor.bbox_pred.weight"][:, 0].tolist() == list(range(4, 16))


def test_legacy_key_names_and_unknown_keys():
    t = torch.zeros(1)
    legacy = {
        "rpn.head.conv.weight": t,
        "backbone.fpn.inner_blocks.0.weight": t,
        "backbone.fpn.layer_blocks.3.bias": t,
    }
    assert set(convert_torchvision_state_dict(legacy, ARCH)) == {
        "proposal_generator.head.conv.0.weight",
        "backbone.lateral_convs.0.0.weight",
        "backbone.output_convs.3.0.bias",
    }
    with pytest.raises(ConversionError, match="roi_heads.mystery.weight"):
        convert_torchvision_state_dict({"roi_heads.mystery.weight": t}, ARCH)
    with pytest.raises(ConversionError, match="mask_head"):  # mask weights are not Faster R-CNN's
        convert_torchvision_state_dict({"roi_heads.mask_head.0.0.weight": t}, ARCH)
    with pytest.raises(ConversionError, match="Unsupported torchvision arch"):
        convert_torchvision_state_dict({}, "retinanet_resnet50_fpn")


def test_maskrcnn_resnet50_fpn_detections_and_mask_probabilities_match_torchvision():
    arch = "maskrcnn_resnet50_fpn"
    tv_model = build_torchvision(arch, seed=2)
    ours = build_converted(arch, tv_model)
    images = random_images()
    with torch.no_grad():
        # torchvision's pipeline up to the 28x28 mask probabilities (before its own pasting)
        image_list, _ = tv_model.transform([im.float() / 255 for im in images])
        features = tv_model.backbone(image_list.tensors)
        proposals, _ = tv_model.rpn(image_list, features)
        expected, _ = tv_model.roi_heads(features, proposals, image_list.image_sizes)
        got = ours.inference([{"image": im} for im in images], do_postprocess=False)

    for tv, inst in zip(expected, got):
        assert len(tv["boxes"]) == len(inst) == 100
        i, j = _match(tv, inst)
        assert len(i) >= 0.95 * len(tv["boxes"])
        torch.testing.assert_close(inst.pred_boxes.tensor[j], tv["boxes"][i], rtol=1e-4, atol=1e-2)
        torch.testing.assert_close(inst.scores[j], tv["scores"][i], rtol=5e-4, atol=1e-5)
        # the mask pooler reads the final boxes, which carry the ~1e-5 relative noise above; given
        # the same boxes and features, pooler and mask head agree bit for bit
        torch.testing.assert_close(inst.pred_masks[j], tv["masks"][i], rtol=0, atol=1e-2)
        assert (inst.pred_masks[j] - tv["masks"][i]).abs().mean() < 1e-4
