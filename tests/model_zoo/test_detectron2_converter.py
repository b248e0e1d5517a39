"""detectron2 model zoo .pkl files -> rcnnzoo: every key of the real layouts maps, loads strictly, exactly.

The detectron2-layout dicts below are written from detectron2's module names and shapes (stem,
res{2..5} bottlenecks with ``shortcut``, ``fpn_lateral{s}``/``fpn_output{s}``, ``rpn_head``,
``box_head.fc{1,2}``, ``mask_head.mask_fcn{1..4}``) and from the Caffe2 blob names of the MSRA
ImageNet files, not from the converter's rules, so that a wrong rule fails here.
"""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rcnnzoo.config import instantiate
from rcnnzoo.model_zoo import get_config
from rcnnzoo.model_zoo.converters import (
    DETECTRON2_ARCHS,
    ConversionError,
    build_imagenet_backbone,
    convert_detectron2_state_dict,
    msra_backbone_weights,
    place_backbone_weights,
    read_detectron2_pkl,
)
from rcnnzoo.modeling.backbone import ResNet

_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _bottleneck_shapes(depth: int):
    """(stage 2..5, block, conv i 1..3 or 0 for the shortcut, weight shape) of a bottleneck ResNet."""
    in_channels = 64
    for s, n in zip(range(2, 6), _BLOCKS[depth]):
        width, out = 64 * 2 ** (s - 2), 256 * 2 ** (s - 2)
        for b in range(n):
            cin = in_channels if b == 0 else out
            yield s, b, 1, (width, cin, 1, 1)
            yield s, b, 2, (width, width, 3, 3)
            yield s, b, 3, (out, width, 1, 1)
            if b == 0:
                yield s, b, 0, (out, cin, 1, 1)
        in_channels = out


class _Random:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.random(shape, dtype=np.float32) - np.float32(0.5)

    def var(self, n: int) -> np.ndarray:
        return self.rng.uniform(0.5, 2.0, n).astype(np.float32)


def detectron2_r50_fpn(masks: bool) -> dict[str, np.ndarray]:
    """A state dict with detectron2's names and shapes for (Mask) R-CNN R50-FPN, 80 COCO classes
    (a new dict each call; the arrays are shared between calls and must not be modified)."""
    return dict(_detectron2_r50_fpn(masks))


@functools.cache
def _detectron2_r50_fpn(masks: bool, seed: int = 0) -> dict[str, np.ndarray]:
    r = _Random(seed)
    sd: dict[str, np.ndarray] = {}

    def conv_norm(name: str, shape: tuple[int, ...]) -> None:
        c = shape[0]
        sd[f"{name}.weight"] = r(*shape)
        sd.update({f"{name}.norm.weight": r(c) + 1, f"{name}.norm.bias": r(c)})
        sd.update({f"{name}.norm.running_mean": r(c), f"{name}.norm.running_var": r.var(c)})

    conv_norm("backbone.bottom_up.stem.conv1", (64, 3, 7, 7))
    for s, b, i, shape in _bottleneck_shapes(50):
        conv_norm(f"backbone.bottom_up.res{s}.{b}.{f'conv{i}' if i else 'shortcut'}", shape)
    for s, c in zip(range(2, 6), (256, 512, 1024, 2048)):
        sd.update(
            {f"backbone.fpn_lateral{s}.weight": r(256, c, 1, 1), f"backbone.fpn_lateral{s}.bias": r(256)}
        )
        sd.update(
            {f"backbone.fpn_output{s}.weight": r(256, 256, 3, 3), f"backbone.fpn_output{s}.bias": r(256)}
        )
    rpn = "proposal_generator.rpn_head"
    sd.update({f"{rpn}.conv.weight": r(256, 256, 3, 3), f"{rpn}.conv.bias": r(256)})
    sd.update({f"{rpn}.objectness_logits.weight": r(3, 256, 1, 1), f"{rpn}.objectness_logits.bias": r(3)})
    sd.update({f"{rpn}.anchor_deltas.weight": r(12, 256, 1, 1), f"{rpn}.anchor_deltas.bias": r(12)})
    sd.update({"roi_heads.box_head.fc1.weight": r(1024, 256 * 7 * 7), "roi_heads.box_head.fc1.bias": r(1024)})
    sd.update({"roi_heads.box_head.fc2.weight": r(1024, 1024), "roi_heads.box_head.fc2.bias": r(1024)})
    # background last in cls_score; class-specific box deltas without a background
    sd.update(
        {
            "roi_heads.box_predictor.cls_score.weight": r(81, 1024),
            "roi_heads.box_predictor.cls_score.bias": r(81),
        }
    )
    sd.update(
        {
            "roi_heads.box_predictor.bbox_pred.weight": r(320, 1024),
            "roi_heads.box_predictor.bbox_pred.bias": r(320),
        }
    )
    if masks:
        for i in range(1, 5):
            sd[f"roi_heads.mask_head.mask_fcn{i}.weight"] = r(256, 256, 3, 3)
            sd[f"roi_heads.mask_head.mask_fcn{i}.bias"] = r(256)
        sd.update(
            {
                "roi_heads.mask_head.deconv.weight": r(256, 256, 2, 2),
                "roi_heads.mask_head.deconv.bias": r(256),
            }
        )
        sd.update(
            {
                "roi_heads.mask_head.predictor.weight": r(80, 256, 1, 1),
                "roi_heads.mask_head.predictor.bias": r(80),
            }
        )
    return sd


def msra_blobs(depth: int) -> dict[str, np.ndarray]:
    """The blobs of detectron2's ImageNetPretrained/MSRA/R-{depth}.pkl (affine BN: _bn_s, _bn_b);
    a new dict each call, shared arrays."""
    return dict(_msra_blobs(depth))


@functools.cache
def _msra_blobs(depth: int, seed: int = 0) -> dict[str, np.ndarray]:
    r = _Random(seed)
    blobs = {"conv1_w": r(64, 3, 7, 7), "res_conv1_bn_s": r(64) + 1, "res_conv1_bn_b": r(64)}
    for s, b, i, shape in _bottleneck_shapes(depth):
        name = f"res{s}_{b}_" + ("branch1" if i == 0 else f"branch2{'abc'[i - 1]}")
        blobs.update({f"{name}_w": r(*shape), f"{name}_bn_s": r(shape[0]) + 1, f"{name}_bn_b": r(shape[0])})
    blobs.update({"fc1000_w": r(1000, 2048), "fc1000_b": r(1000)})
    return blobs


def _write_pkl(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def _load_strict(arch: str, converted: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = instantiate(get_config(DETECTRON2_ARCHS[arch]).model)
    model.load_state_dict(converted, strict=True)
    return model


@pytest.mark.parametrize("masks", [False, True], ids=["faster", "mask"])
def test_trained_r50_fpn_pkl_converts_and_loads_strictly(tmp_path, masks):
    arch = "mask_rcnn_R_50_FPN_3x" if masks else "faster_rcnn_R_50_FPN_1x"
    sd = detectron2_r50_fpn(masks)
    path = _write_pkl(
        tmp_path / "model_final_f10217.pkl", {"model": sd, "__author__": "Detectron2 Model Zoo"}
    )
    weights, layout = read_detectron2_pkl(path)
    assert layout == "detectron2" and set(weights) == set(sd)

    model = _load_strict(arch, convert_detectron2_state_dict(weights, arch))
    ours = model.state_dict()
    pairs = {
        "backbone.bottom_up.conv1.weight": "backbone.bottom_up.stem.conv1.weight",
        "backbone.bottom_up.bn1.running_var": "backbone.bottom_up.stem.conv1.norm.running_var",
        # bn1/bn2 have equal shapes: only the values tell a swap
        "backbone.bottom_up.layer3.5.bn1.bias": "backbone.bottom_up.res4.5.conv1.norm.bias",
        "backbone.bottom_up.layer3.5.bn2.bias": "backbone.bottom_up.res4.5.conv2.norm.bias",
        "backbone.bottom_up.layer4.0.downsample.0.weight": "backbone.bottom_up.res5.0.shortcut.weight",
        "backbone.bottom_up.layer4.0.downsample.1.running_mean": "backbone.bottom_up.res5.0.shortcut.norm.running_mean",
        "backbone.lateral_convs.0.0.weight": "backbone.fpn_lateral2.weight",
        "backbone.output_convs.1.0.bias": "backbone.fpn_output3.bias",  # 3x3 convs all of one shape
        "backbone.output_convs.3.0.bias": "backbone.fpn_output5.bias",
        "proposal_generator.head.conv.0.weight": "proposal_generator.rpn_head.conv.weight",
        "proposal_generator.head.objectness_logits.bias": "proposal_generator.rpn_head.objectness_logits.bias",
        "roi_heads.box_head.fcs.2.weight": "roi_heads.box_head.fc2.weight",
        # background last in both projects: no reordering
        "roi_heads.box_predictor.cls_score.bias": "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight": "roi_heads.box_predictor.bbox_pred.weight",
    }
    if masks:
        pairs["roi_heads.mask_head.convs.0.bias"] = "roi_heads.mask_head.mask_fcn1.bias"
        pairs["roi_heads.mask_head.convs.4.bias"] = "roi_heads.mask_head.mask_fcn3.bias"
        pairs["roi_heads.mask_head.deconv.weight"] = "roi_heads.mask_head.deconv.weight"
        pairs["roi_heads.mask_head.predictor.bias"] = "roi_heads.mask_head.predictor.bias"
    for ours_key, theirs in pairs.items():
        assert torch.equal(ours[ours_key], torch.from_numpy(sd[theirs])), ours_key
    # detectron2's R50 weights stride in the 1x1 convs; the config must build them that way
    assert model.backbone.bottom_up.layer2[0].conv1.stride == (2, 2)


def test_old_checkpoint_buffers_are_dropped_and_unknown_keys_listed():
    sd = detectron2_r50_fpn(masks=False)
    sd["proposal_generator.anchor_generator.cell_anchors.0"] = np.zeros((3, 4), np.float32)
    sd["pixel_mean"] = np.zeros((3, 1, 1), np.float32)
    converted = convert_detectron2_state_dict(sd, "faster_rcnn_R_50_FPN_3x")
    assert not any("cell_anchors" in k or "pixel" in k for k in converted)

    sd["roi_heads.keypoint_head.conv_fcn1.weight"] = np.zeros(1, np.float32)
    with pytest.raises(ConversionError, match=r"roi_heads\.keypoint_head\.conv_fcn1\.weight"):
        convert_detectron2_state_dict(sd, "faster_rcnn_R_50_FPN_3x")
    with pytest.raises(ConversionError, match=r"mask_head\.mask_fcn1"):  # Mask R-CNN weights, Faster arch
        convert_detectron2_state_dict(detectron2_r50_fpn(masks=True), "faster_rcnn_R_50_FPN_1x")
    with pytest.raises(ConversionError, match="Unsupported detectron2 arch"):
        convert_detectron2_state_dict({}, "retinanet_R_50_FPN_1x")


def test_missing_key_fails_the_strict_load():
    sd = detectron2_r50_fpn(masks=False)
    del sd["backbone.bottom_up.res3.2.conv2.norm.running_var"]
    converted = convert_detectron2_state_dict(sd, "faster_rcnn_R_50_FPN_1x")
    with pytest.raises(RuntimeError, match=r"layer2\.2\.bn2\.running_var"):
        _load_strict("faster_rcnn_R_50_FPN_1x", converted)


def test_msra_r50_pkl_loads_into_the_backbone_and_the_fpn_config(tmp_path):
    blobs = msra_blobs(50)
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, np.float32)  # solver state in some C2 files
    path = _write_pkl(tmp_path / "R-50.pkl", blobs, protocol=2)  # a bare dict, Python 2 era
    weights, layout = read_detectron2_pkl(path)
    assert layout == "caffe2" and "res2_0_branch2a_w_momentum" not in weights

    backbone_sd = msra_backbone_weights(weights, "R-50")
    build_imagenet_backbone("R-50").load_state_dict(backbone_sd, strict=True)
    assert torch.equal(
        backbone_sd["layer1.0.downsample.0.weight"], torch.from_numpy(blobs["res2_0_branch1_w"])
    )
    assert torch.equal(backbone_sd["layer3.2.bn3.weight"], torch.from_numpy(blobs["res4_2_branch2c_bn_s"]))
    assert torch.equal(backbone_sd["layer3.2.bn2.bias"], torch.from_numpy(blobs["res4_2_branch2b_bn_b"]))

    # default placement: the FPN configs' backbone.bottom_up; the rest of the detector stays fresh
    converted = convert_detectron2_state_dict(weights, "R-50")
    model = instantiate(get_config("COCO-Detection/faster_rcnn_R_50_FPN_1x.py").model)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert unexpected == []
    assert missing and not any(k.startswith("backbone.bottom_up.") for k in missing)
    assert len(converted) == sum(k.startswith("backbone.bottom_up.") for k in model.state_dict())


def test_msra_affine_bn_is_exact_and_stride_sits_in_the_1x1_conv():
    """The stem computes Caffe's maxpool(relu(s * conv(x) + b)) bit for bit."""
    blobs = msra_blobs(50)
    stem = ResNet(depth=50, out_features=["stem"], stride_in_1x1=True)
    weights = msra_backbone_weights(blobs, "R-50")
    stem.load_state_dict({k: v for k, v in weights.items() if k.startswith(("conv1.", "bn1."))}, strict=True)
    x = torch.randn(1, 3, 32, 48) * 50
    s, b = (torch.from_numpy(blobs[f"res_conv1_bn_{n}"])[:, None, None] for n in "sb")
    expected = F.max_pool2d(
        F.relu(F.conv2d(x, torch.from_numpy(blobs["conv1_w"]), stride=2, padding=3) * s + b), 3, 2, 1
    )
    assert torch.equal(stem(x)["stem"], expected)
    assert build_imagenet_backbone("R-50").layer3[0].conv1.stride == (2, 2)


def test_msra_r101_maps_every_blob():
    weights = msra_backbone_weights(msra_blobs(101), "R-101")
    build_imagenet_backbone("R-101").load_state_dict(weights, strict=True)
    assert len([k for k in weights if k.startswith("layer3.") and k.endswith("conv2.weight")]) == 23


def test_msra_errors_name_the_blobs():
    blobs = msra_blobs(50)
    blobs["res5_2_branch2c_bn_rm"] = np.zeros(2048, np.float32)
    with pytest.raises(ConversionError, match="res5_2_branch2c_bn_rm"):
        msra_backbone_weights(blobs, "R-50")
    blobs = msra_blobs(50)
    del blobs["res3_1_branch2b_bn_b"]
    with pytest.raises(ConversionError, match=r"layer2\.1\.bn2"):
        msra_backbone_weights(blobs, "R-50")
    with pytest.raises(RuntimeError, match="layer3.6"):  # R-101's blobs are not an R-50
        build_imagenet_backbone("R-50").load_state_dict(msra_backbone_weights(msra_blobs(101), "R-101"))


def test_placement_into_a_c4_model_puts_layer4_in_the_box_head():
    weights = msra_backbone_weights(msra_blobs(50), "R-50")
    model = instantiate(get_config("COCO-Detection/faster_rcnn_R_50_C4_1x.py").model)
    placed = place_backbone_weights(weights, "R-50", model)
    assert placed.prefixes == {"layer4.": "roi_heads.box_head.res5.", "": "backbone."}
    assert placed.not_placed == []
    missing, unexpected = model.load_state_dict(placed.state_dict, strict=False)
    assert unexpected == [] and all(
        k.startswith(("proposal_generator.", "roi_heads.box_predictor.")) for k in missing
    )


def test_placement_refuses_a_resnet_of_another_depth():
    model = instantiate(get_config("COCO-Detection/faster_rcnn_R_50_FPN_1x.py").model)
    r101 = msra_backbone_weights(msra_blobs(101), "R-101")
    with pytest.raises(ConversionError, match=r"not a ResNet-101.*layer3\.6\."):
        place_backbone_weights(r101, "R-101", model)
