"""The R-CNN meta-architecture (crop, warp, CNN per region) on tiny images and proposals."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from rcnnzoo.config import LazyCall as L
from rcnnzoo.config import instantiate
from rcnnzoo.modeling import (
    RCNN,
    RPN,
    DefaultAnchorGenerator,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    LinearSVMOutputLayers,
    PrecomputedProposals,
    SelectiveSearch,
    StandardRPNHead,
    TinyNet,
)
from rcnnzoo.structures import Boxes, Instances

GT = torch.tensor([[8.0, 6.0, 40.0, 30.0], [30.0, 28.0, 60.0, 46.0]])
GT_CLASSES = torch.tensor([0, 2])


def _model(predictor=None, **kwargs) -> RCNN:
    torch.manual_seed(0)
    settings = dict(
        backbone=L(TinyNet)(widths=[8, 8, 16, 16]),
        proposal_generator=L(PrecomputedProposals)(),
        box_head=L(FastRCNNConvFCHead)(fc_dims=[32]),
        box_predictor=predictor or L(FastRCNNOutputLayers)(test_score_thresh=0.0),
        num_classes=3,
        in_feature="c5",
        input_size=32,
        context_padding=2,
        batch_size_per_image=16,
        positive_fraction=0.25,
        pixel_mean=[110.0, 110.0, 110.0],
        pixel_std=[60.0, 60.0, 60.0],
    )
    settings.update(kwargs)
    return instantiate(L(RCNN)(**settings))


def _proposals(height: int, width: int, num: int, generator: torch.Generator) -> Instances:
    """Jittered ground-truth boxes and random boxes."""
    jitter = GT.repeat(num // 4, 1) + torch.randn(num // 4 * len(GT), 4, generator=generator) * 2
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([width - 8.0, height - 8.0])
    wh = 4 + torch.rand(num, 2, generator=generator) * 24
    boxes = torch.cat([jitter, torch.cat([xy, xy + wh], dim=1)])[:num]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return Instances(
        (height, width),
        proposal_boxes=Boxes(boxes),
        objectness_logits=-torch.arange(num, dtype=torch.float32),
    )


def _inputs(num_proposals: int = 40, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for height, width in ((48, 64), (56, 72)):
        image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
        for (x0, y0, x1, y1), c in zip(GT.int().tolist(), GT_CLASSES.tolist()):
            image[c, y0:y1, x0:x1] = 255  # an object of class c is bright in channel c
        out.append(
            {
                "image": image,
                "height": 2 * height,  # the original image, twice the size the model sees
                "width": 2 * width,
                "instances": Instances(
                    (height, width), gt_boxes=Boxes(GT.clone()), gt_classes=GT_CLASSES.clone()
                ),
                "proposals": _proposals(height, width, num_proposals, generator),
            }
        )
    return out


def test_training_samples_the_papers_windows():
    model = _model()
    inputs = _inputs(num_proposals=60)
    gt = [x["instances"] for x in inputs]
    sampled = model.label_and_sample_proposals([x["proposals"] for x in inputs], gt)
    for windows in sampled:
        assert len(windows) == 16  # batch_size_per_image
        fg = windows.gt_classes < 3
        assert 1 <= int(fg.sum()) <= 4  # at most positive_fraction foreground
        # foreground windows overlap their box by 0.5 or more, and carry its class
        iou = torch.diag(box_iou(windows.proposal_boxes.tensor[fg], windows.gt_boxes.tensor[fg]))
        assert bool((iou >= 0.5).all())


def test_training_returns_losses_that_decrease():
    model = _model().train()
    inputs = _inputs()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(15):
        torch.manual_seed(0)  # the same windows each step
        losses = model(inputs)
        assert set(losses) == {"loss_cls", "loss_box_reg"}
        total = sum(losses.values())
        first = first if first is not None else total.item()
        optimizer.zero_grad()
        total.backward()
        assert model.backbone.stem[0][0].weight.grad.abs().sum() > 0  # the CNN itself trains
        optimizer.step()
    assert total.item() < 0.5 * first


def test_inference_gives_detections_in_the_original_image_size():
    model = _model().eval()
    with torch.no_grad():
        outputs = model(_inputs())
    for out, (height, width) in zip(outputs, ((96, 128), (112, 144))):
        det = out["instances"]
        assert det.image_size == (height, width)
        assert len(det) > 0 and det.has("scores") and det.has("pred_classes")
        boxes = det.pred_boxes.tensor
        assert bool((boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all() and (boxes >= 0).all())
        assert bool(((det.pred_classes >= 0) & (det.pred_classes < 3)).all())


def test_chunking_the_crops_does_not_change_the_detections():
    inputs = _inputs()
    results = []
    for chunk in (7, 1000):
        model = _model(crop_batch_size=chunk).eval()
        with torch.no_grad():
            results.append(model.inference(inputs, do_postprocess=False))
    for a, b in zip(*results):
        torch.testing.assert_close(a.scores, b.scores)
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)


def test_pool5_box_regressors_move_the_boxes_once_installed():
    model = _model(box_regression="pool5").eval()
    assert not any(p.requires_grad for p in model.pool5_bbox_pred.parameters())  # fitted post hoc only
    inputs = _inputs(num_proposals=8)
    for x in inputs:  # one proposal each, so that each detection's proposal is known
        x["proposals"] = x["proposals"][:1]
    with torch.no_grad():
        before = model.inference(inputs, do_postprocess=False)
        # zero deltas until installed: the detections are the proposals
        for det, x in zip(before, inputs):
            assert torch.allclose(
                det.pred_boxes.tensor, x["proposals"].proposal_boxes.tensor.expand(len(det), 4)
            )
        biases = torch.zeros(12)
        biases[0::4] = 1.0  # dx = 1 for every class: with weights (10, 10, 5, 5), +0.1 box widths
        model.load_box_regressors(torch.zeros(12, model.pooled_dim), biases)
        after = model.inference(inputs, do_postprocess=False)
    for det, x in zip(after, inputs):
        box = x["proposals"].proposal_boxes.tensor[0]
        shifted = box + torch.tensor([0.1, 0.0, 0.1, 0.0]) * (box[2] - box[0])
        shifted[0::2] = shifted[0::2].clamp(max=x["image"].shape[2])
        assert torch.allclose(det.pred_boxes.tensor, shifted.expand(len(det), 4), atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        model.load_box_regressors(torch.zeros(4, model.pooled_dim), torch.zeros(4))


def test_svm_predictor_scores_with_the_installed_svms():
    model = _model(predictor=L(LinearSVMOutputLayers)(test_score_thresh=0.0)).eval()
    inputs = _inputs(num_proposals=8)
    with torch.no_grad():
        before = model.inference(inputs, do_postprocess=False)
        dim = model.box_head.output_shape.channels
        model.box_predictor.load_svms(torch.zeros(3, dim), torch.tensor([-9.0, 2.0, -9.0]))
        after = model.inference(inputs, do_postprocess=False)
    assert any(len(a) != len(b) or not torch.equal(a.scores, b.scores) for a, b in zip(before, after))
    for det in after:  # only class 1's SVM fires: sigmoid(2) for every proposal
        top = det.pred_classes[det.scores > 0.5]
        assert len(top) > 0 and bool((top == 1).all())
        torch.testing.assert_close(
            det.scores[det.pred_classes == 1],
            torch.full_like(det.scores[det.pred_classes == 1], torch.sigmoid(torch.tensor(2.0)).item()),
        )


def test_selective_search_proposes_live():
    model = _model(proposal_generator=L(SelectiveSearch)(mode="single", max_proposals=(50, 30))).eval()
    inputs = _inputs()
    for x in inputs:
        del x["proposals"]
    with torch.no_grad():
        proposals = model.propose(inputs, model.preprocess_image(inputs))
        outputs = model(inputs)
    assert all(0 < len(p) <= 30 for p in proposals)
    assert all(len(out["instances"]) > 0 for out in outputs)


def test_an_image_without_proposals_gives_no_detections():
    model = _model().eval()
    inputs = _inputs()
    inputs[0]["proposals"] = inputs[0]["proposals"][:0]
    with torch.no_grad():
        outputs = model(inputs)
    assert len(outputs[0]["instances"]) == 0 and len(outputs[1]["instances"]) > 0


def test_a_proposal_generator_that_reads_features_is_refused():
    rpn = L(RPN)(
        in_features=["c5"],
        head=L(StandardRPNHead)(),
        anchor_generator=L(DefaultAnchorGenerator)(sizes=[[32]], aspect_ratios=[[1.0]]),
    )
    with pytest.raises(Exception, match="needs_features = False"):
        _model(proposal_generator=rpn)


def test_the_box_head_input_must_not_depend_on_rounding():
    with pytest.raises(Exception, match="not a multiple"):
        _model(input_size=40)
    model = _model(input_size=40, pooled_size=2)  # pool5 makes any input size work
    assert model.pooled_dim == 16 * 2 * 2
