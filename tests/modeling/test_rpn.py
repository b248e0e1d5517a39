import torch

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.anchor_generator import DefaultAnchorGenerator
from rcnnzoo.modeling.box_regression import Box2BoxTransform
from rcnnzoo.modeling.proposal_generator import RPN, StandardRPNHead, find_top_rpn_proposals
from rcnnzoo.structures import Boxes, ImageList, Instances


def _rpn(**kw):
    shape = {"p3": ShapeSpec(channels=8, stride=8), "p4": ShapeSpec(channels=8, stride=16)}
    return RPN(
        input_shape=shape,
        in_features=["p3", "p4"],
        head=StandardRPNHead(in_channels=8, num_anchors=3),
        anchor_generator=DefaultAnchorGenerator(sizes=[[32], [64]], aspect_ratios=[[0.5, 1, 2]], strides=[8, 16]),
        **kw,
    )


def _inputs(n=2, gt=((8.0, 8.0, 40.0, 40.0),)):
    images = ImageList(torch.zeros(n, 3, 64, 96), [(64, 96)] * n)
    feats = {"p3": torch.randn(n, 8, 8, 12), "p4": torch.randn(n, 8, 4, 6)}
    targets = [Instances((64, 96), gt_boxes=Boxes(torch.tensor(gt).reshape(-1, 4)), gt_classes=torch.zeros(len(gt), dtype=torch.int64)) for _ in range(n)]
    return images, feats, targets


def test_anchor_sampling_budget_and_exact_match_is_positive():
    torch.manual_seed(0)
    rpn = _rpn(batch_size_per_image=16, positive_fraction=0.5)
    images, feats, targets = _inputs()
    anchors = rpn.anchor_generator([feats["p3"], feats["p4"]])
    all_anchors = torch.cat(anchors)
    # put a ground-truth box exactly on one anchor
    gt = all_anchors[5:6].clone()
    targets = [Instances((64, 96), gt_boxes=Boxes(gt), gt_classes=torch.zeros(1, dtype=torch.int64))] * 2
    labels, boxes = rpn.label_and_sample_anchors(anchors, images.image_sizes, targets)
    assert labels.shape == (2, len(all_anchors))
    assert ((labels >= 0).sum(dim=1) <= 16).all()
    assert ((labels == 1).sum(dim=1) <= 8).all()
    assert (labels[:, 5] == 1).all()
    assert torch.equal(boxes[0, 5], gt[0])


def test_losses_finite_and_zero_box_loss_without_objects():
    rpn = _rpn()
    rpn.train()
    images, feats, _ = _inputs()
    empty = [Instances((64, 96), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64))] * 2
    proposals, losses = rpn(images, feats, empty)
    assert losses["loss_rpn_loc"].item() == 0.0
    assert torch.isfinite(losses["loss_rpn_cls"]) and losses["loss_rpn_cls"] > 0
    assert len(proposals) == 2


def test_boundary_thresh_ignores_crossing_anchors():
    rpn = _rpn(anchor_boundary_thresh=0)
    images, feats, targets = _inputs()
    anchors = rpn.anchor_generator([feats["p3"], feats["p4"]])
    labels, _ = rpn.label_and_sample_anchors(anchors, images.image_sizes, targets)
    a = torch.cat(anchors)
    crossing = (a[:, 0] < 0) | (a[:, 1] < 0) | (a[:, 2] >= 96) | (a[:, 3] >= 64)
    assert (labels[:, crossing] == -1).all()


def test_proposal_selection_sorts_clips_filters_and_suppresses_per_image():
    t = Box2BoxTransform()
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 50.5, 60.0], [-5.0, -5.0, 20.0, 20.0]])]
    logits = [torch.tensor([[3.0, 2.0, 5.0, 1.0], [0.0, 1.0, 2.0, 3.0]])]
    deltas = [torch.zeros(2, 4, 4)]
    out = find_top_rpn_proposals(
        anchors, logits, deltas, [(30, 30), (100, 100)], box2box_transform=t,
        nms_thresh=0.5, pre_nms_topk=10, post_nms_topk=10, min_box_size=1.0,
    )
    # image 0: anchor 2 is outside after clipping to 30x30 (empty) and dropped; anchor 1
    # overlaps anchor 0 (IoU 0.82) and is suppressed; anchor 3 is clipped to (0, 0, 20, 20)
    b0 = out[0].proposal_boxes.tensor
    assert out[0].objectness_logits.tolist() == [3.0, 1.0]
    assert b0.tolist() == [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 20.0, 20.0]]
    # image 1: anchor 2 is 0.5 px wide (< min size) and dropped; scores sorted
    assert out[1].objectness_logits.tolist() == [3.0, 1.0]
