"""torchvision -> rcnnzoo conversion: the converted model gives torchvision's detections."""

from __future__ import annotations

import pytest
import torch
import torchvision

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.config import instantiate
from rcnnzoo.model_zoo import get_config
from rcnnzoo.model_zoo.converters import TORCHVISION_ARCHS, ConversionError, convert_torchvision_state_dict
from rcnnzoo.tools.convert_checkpoint import main as convert_main

from .torchvision_parity import (
    FROZEN_BN_ARCHS,
    build_converted,
    build_torchvision,
    match_detections,
    random_images,
    run_both,
)

ARCH = "fasterrcnn_resnet50_fpn"
ALL_ARCHS = [
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
]
# RPN proposals per image at test time: fewer for v2, whose 4-conv BN box head (and mask head)
# would otherwise make it the slowest test here; still 100 detections per image are compared
POST_NMS_TOPK = {"fasterrcnn_resnet50_fpn_v2": 150, "maskrcnn_resnet50_fpn_v2": 150}


def test_every_supported_arch_is_tested():
    assert sorted(TORCHVISION_ARCHS) == sorted(ALL_ARCHS)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_detections_match_torchvision(arch):
    """Same boxes, scores, labels (and 28x28 mask probabilities) as torchvision, to 1e-4 relative.

    Every option of the arch's config that reproduces torchvision is exercised: without
    ``pixel_divisor`` the scores drift by ~1e-3, without ``strides_from_grid`` p6 (MobileNetV3:
    its pool level) anchors move, without ``test_min_box_size`` border slivers take places in the
    top 100, and for MobileNetV3 without ``score_thresh`` or the RPN head's anchor reordering most
    detections change. With all of them the arithmetic is torchvision's: boxes and masks come out
    bit for bit, scores within ~2e-7 (the softmax sums the reordered classes in another order).
    """
    post_nms = POST_NMS_TOPK.get(arch)
    kwargs = {"rpn_post_nms_top_n_test": post_nms} if post_nms else {}
    tv_model = build_torchvision(arch, seed=2 if arch.startswith("maskrcnn") else 0, **kwargs)
    ours = build_converted(arch, tv_model, post_nms_topk=post_nms)
    images = random_images()

    with torch.no_grad():  # the same normalized, padded input tensor, bit for bit
        tv_input = tv_model.transform([im.float() / 255 for im in images])[0].tensors
        assert torch.equal(ours.preprocess_image([{"image": im} for im in images]).tensor, tv_input)
    expected, got = run_both(tv_model, ours, images)

    for tv, inst in zip(expected, got):
        assert len(tv["boxes"]) == len(inst) == 100  # many detections compared, not a handful
        i, j = match_detections(tv, inst)
        assert len(i) == len(tv["boxes"])  # every detection found, with its label
        assert torch.equal(j, torch.arange(len(inst)))  # in the same order (both sorted by score)
        torch.testing.assert_close(inst.pred_boxes.tensor[j], tv["boxes"][i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(inst.scores[j], tv["scores"][i], rtol=1e-4, atol=1e-7)
        if "masks" in tv:
            torch.testing.assert_close(inst.pred_masks[j], tv["masks"][i], rtol=1e-4, atol=1e-6)


def test_end_to_end_outputs_match_torchvision():
    """Called as a detector (rcnnzoo's postprocess, torchvision's transform back), on the cheapest arch."""
    arch = "fasterrcnn_mobilenet_v3_large_fpn"
    tv_model = build_torchvision(arch)
    ours = build_converted(arch, tv_model)
    images = random_images()
    with torch.no_grad():
        expected = tv_model([im.float() / 255 for im in images])
        got = ours([{"image": im} for im in images])
    for tv, out, im in zip(expected, got, images):
        inst = out["instances"]
        assert inst.image_size == tuple(im.shape[-2:])
        assert len(tv["boxes"]) == len(inst) == 100
        torch.testing.assert_close(inst.pred_boxes.tensor, tv["boxes"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(inst.scores, tv["scores"], rtol=1e-4, atol=1e-7)
        assert torch.equal(inst.pred_classes + 1, tv["labels"])


@pytest.mark.parametrize(
    "arch",
    # fasterrcnn_resnet50_fpn is tested in test_convert_checkpoint.py; maskrcnn's backbone is the same
    ["fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn", "maskrcnn_resnet50_fpn_v2"],
)
def test_convert_tool_takes_the_arch_and_its_output_loads_strictly(arch, tmp_path):
    """Built without weights, torchvision's backbones have BatchNorm2d (with num_batches_tracked):
    dropped where the rcnnzoo model has FrozenBN (MobileNetV3), kept where it has BatchNorm2d (v2)."""
    torch.manual_seed(0)
    tv = getattr(torchvision.models.detection, arch)(weights=None, weights_backbone=None, num_classes=91)
    state = tv.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in state)
    src, dst = tmp_path / "tv.pth", tmp_path / "rcnnzoo.pth"
    torch.save(state, src)

    record = convert_main([str(src), str(dst), "--source", "torchvision", "--arch", arch])  # loads strictly
    assert record["config"] == TORCHVISION_ARCHS[arch]
    model = instantiate(get_config(record["config"]).model)
    report = Checkpointer(model).load(str(dst))
    assert report.missing_keys == [] and report.unexpected_keys == []
    kept = [
        k
        for k in model.state_dict()
        if k.startswith("backbone.bottom_up.") and k.endswith("num_batches_tracked")
    ]
    assert bool(kept) == (arch not in FROZEN_BN_ARCHS)


def test_class_order_moves_background_last():
    w = torch.arange(4.0)[:, None].expand(4, 2)  # classes: bg, c1, c2, c3
    deltas = torch.arange(16.0)[:, None].expand(16, 2)
    converted = convert_torchvision_state_dict(
        {"roi_heads.box_predictor.cls_score.weight": w, "roi_heads.box_predictor.bbox_pred.weight": deltas},
        ARCH,
    )
    assert converted["roi_heads.box_predictor.cls_score.weight"][:, 0].tolist() == [1, 2, 3, 0]
    assert converted["roi_heads.box_predictor.bbox_pred.weight"][:, 0].tolist() == list(range(4, 16))


def test_mobilenet_rpn_outputs_move_from_ratio_major_to_size_major():
    """15 anchors per location: torchvision's ratio r, size s is channel r * 5 + s, rcnnzoo's s * 3 + r."""
    logits = torch.arange(15.0)[:, None, None, None]
    deltas = torch.arange(60.0)
    converted = convert_torchvision_state_dict(
        {"rpn.head.cls_logits.bias": logits, "rpn.head.bbox_pred.bias": deltas},
        "fasterrcnn_mobilenet_v3_large_fpn",
    )
    order = [0, 5, 10, 1, 6, 11, 2, 7, 12, 3, 8, 13, 4, 9, 14]
    assert converted["proposal_generator.head.objectness_logits.bias"].flatten().tolist() == order
    expected_deltas = [4 * a + k for a in order for k in range(4)]
    assert converted["proposal_generator.head.anchor_deltas.bias"].tolist() == expected_deltas
    # one anchor per location (the ResNet FPNs): nothing moves, the tensor is shared
    one = torch.zeros(3)
    assert (
        convert_torchvision_state_dict({"rpn.head.cls_logits.bias": one}, ARCH)[
            "proposal_generator.head.objectness_logits.bias"
        ]
        is one
    )


def test_v2_head_layouts():
    """Conv + BN blocks land at 3i, 3i + 1 of rcnnzoo's conv + BN + ReLU stacks; the box head's
    Linear (after 4 convs and a Flatten) at fcs.0."""
    t = torch.zeros(1)
    keys = {
        "backbone.fpn.inner_blocks.2.1.running_var": "backbone.lateral_convs.2.1.running_var",
        "rpn.head.conv.1.0.weight": "proposal_generator.head.conv.2.weight",
        "roi_heads.box_head.3.1.num_batches_tracked": "roi_heads.box_head.convs.10.num_batches_tracked",
        "roi_heads.box_head.5.weight": "roi_heads.box_head.fcs.0.weight",
        "roi_heads.mask_head.2.0.weight": "roi_heads.mask_head.convs.6.weight",
    }
    converted = convert_torchvision_state_dict(dict.fromkeys(keys, t), "maskrcnn_resnet50_fpn_v2")
    assert set(converted) == set(keys.values())
    for bad in (
        "roi_heads.box_head.4.weight",
        "roi_heads.box_head.4.0.weight",
        "backbone.fpn.inner_blocks.0.2.weight",
    ):
        with pytest.raises(ConversionError, match="no rcnnzoo counterpart"):
            convert_torchvision_state_dict({bad: t}, "maskrcnn_resnet50_fpn_v2")
    with pytest.raises(ConversionError, match=r"inner_blocks\.0\.1"):  # a norm where v1 has none
        convert_torchvision_state_dict({"backbone.fpn.inner_blocks.0.1.weight": t}, ARCH)


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
    legacy_mask = {"roi_heads.mask_head.mask_fcn2.weight": t}
    assert set(convert_torchvision_state_dict(legacy_mask, "maskrcnn_resnet50_fpn")) == {
        "roi_heads.mask_head.convs.2.weight"
    }
    with pytest.raises(ConversionError, match="roi_heads.mystery.weight"):
        convert_torchvision_state_dict({"roi_heads.mystery.weight": t}, ARCH)
    with pytest.raises(ConversionError, match="mask_head"):  # mask weights are not Faster R-CNN's
        convert_torchvision_state_dict({"roi_heads.mask_head.0.0.weight": t}, ARCH)
    with pytest.raises(ConversionError, match="Unsupported torchvision arch"):
        convert_torchvision_state_dict({}, "retinanet_resnet50_fpn")


@pytest.mark.parametrize(
    "arch", ["fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "maskrcnn_resnet50_fpn_v2"]
)
def test_optimized_for_inference_still_matches_torchvision(arch):
    """Folded norms (FrozenBN, the v2 heads' BatchNorm), channels-last convs and RoIAlign on
    channels-last maps change only the float rounding, so the detections are still torchvision's.

    These random-weight networks amplify rounding: channels-last alone (another summation order
    in the convs, nothing folded) already moves scores by up to ~2e-3 relative and boxes by
    ~0.02 px, and lets near-equal detections trade places; a wrong fold moves everything.
    """
    from rcnnzoo.modeling import optimize_for_inference

    post_nms = POST_NMS_TOPK.get(arch)
    kwargs = {"rpn_post_nms_top_n_test": post_nms} if post_nms else {}
    tv_model = build_torchvision(arch, seed=2 if arch.startswith("maskrcnn") else 0, **kwargs)
    ours = optimize_for_inference(build_converted(arch, tv_model, post_nms_topk=post_nms))
    expected, got = run_both(tv_model, ours, random_images())
    for tv, inst in zip(expected, got):
        assert len(tv["boxes"]) == len(inst) == 100
        i, j = match_detections(tv, inst)
        assert len(i) >= 95  # near-equal detections may trade the last places
        torch.testing.assert_close(inst.pred_boxes.tensor[j], tv["boxes"][i], rtol=1e-3, atol=0.1)
        torch.testing.assert_close(inst.scores[j], tv["scores"][i], rtol=1e-2, atol=1e-5)
        if "masks" in tv:
            diff = (inst.pred_masks[j] - tv["masks"][i]).abs()
            assert diff.mean() < 1e-4 and diff.max() < 0.05  # a few pixels near 0.5 move most
