"""The mask head: shapes, targets cut from each foreground RoI's matched ground truth, a loss on the
ground-truth class's channel only, inference on the predicted class's channel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.matcher import Matcher
from rcnnzoo.modeling.roi_heads import (
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
    mask_rcnn_targets,
    sample_rois,
    select_foreground_proposals,
)
from rcnnzoo.structures import BitMasks, Boxes, Instances


def test_head_shapes():
    head = MaskRCNNConvUpsampleHead(input_shape=ShapeSpec(channels=8, height=14, width=14), num_classes=3)
    assert len([m for m in head.convs if isinstance(m, torch.nn.Conv2d)]) == 4
    assert head.convs[0].out_channels == 256 and head.mask_size == 28
    assert head(torch.randn(5, 8, 14, 14)).shape == (5, 3, 28, 28)
    assert head(torch.randn(0, 8, 14, 14)).shape == (0, 3, 28, 28)
    agnostic = MaskRCNNConvUpsampleHead(
        input_shape=ShapeSpec(channels=8, height=14, width=14), num_classes=3, conv_dims=(16,), cls_agnostic_mask=True
    )
    assert agnostic(torch.randn(2, 8, 14, 14)).shape == (2, 1, 28, 28)
    c4 = MaskRCNNConvUpsampleHead(input_shape=ShapeSpec(channels=32, height=7, width=7), num_classes=2, conv_dims=())
    assert c4(torch.randn(2, 32, 7, 7)).shape == (2, 2, 14, 14) and c4.mask_size == 14


def two_objects() -> Instances:
    masks = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks[0, 0:8, 0:8] = True  # object 0 fills its box (0, 0, 8, 8)
    masks[1, 10:20, 10:15] = True  # object 1: left half of its box (10, 10, 20, 20)
    return Instances(
        (20, 20),
        gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 8.0, 8.0], [10.0, 10.0, 20.0, 20.0]])),
        gt_classes=torch.tensor([2, 0]),
        gt_masks=BitMasks(masks),
    )


def sampled_rois(gt: Instances) -> Instances:
    props = Instances(
        (20, 20),
        proposal_boxes=Boxes(
            torch.tensor(
                [
                    [10.0, 10.0, 20.0, 20.0],  # object 1 exactly
                    [0.0, 0.0, 8.0, 8.0],  # object 0 exactly
                    [0.0, 10.0, 5.0, 20.0],  # background
                    [10.0, 10.0, 20.0, 19.0],  # object 1, IoU 0.9
                ]
            )
        ),
        objectness_logits=torch.zeros(4),
    )
    return sample_rois(props, gt, Matcher([0.5], [0, 1]), num_classes=3, batch_size_per_image=16, positive_fraction=1.0)


def test_sampled_rois_carry_their_ground_truth_index_and_targets_come_from_it():
    gt = two_objects()
    s = sampled_rois(gt)
    (fg,), is_fg = select_foreground_proposals([s], num_classes=3)
    assert is_fg.sum() == 3 and len(fg) == 3
    by_box = {tuple(b.tolist()): int(i) for b, i in zip(fg.proposal_boxes.tensor, fg.gt_indices)}
    assert by_box == {(10.0, 10.0, 20.0, 20.0): 1, (0.0, 0.0, 8.0, 8.0): 0, (10.0, 10.0, 20.0, 19.0): 1}

    targets = mask_rcnn_targets([fg], [gt], 4)
    for box, t in zip(fg.proposal_boxes.tensor.tolist(), targets):
        if box == [0.0, 0.0, 8.0, 8.0]:
            assert bool((t == 1).all())  # the object fills the RoI
        else:  # the left half of object 1's box; cropped from the RoI, not from the gt box
            expected = torch.zeros(4, 4)
            expected[:, :2] = 1
            assert torch.equal(t, expected), (box, t)


def test_loss_reads_only_the_ground_truth_class_channel():
    gt = two_objects()
    (fg,), _ = select_foreground_proposals([sampled_rois(gt)], num_classes=3)
    torch.manual_seed(0)
    logits = torch.randn(len(fg), 3, 4, 4, requires_grad=True)
    loss = mask_rcnn_loss(logits, [fg], [gt])
    targets = mask_rcnn_targets([fg], [gt], 4)
    manual = F.binary_cross_entropy_with_logits(logits[torch.arange(len(fg)), fg.gt_classes], targets)
    assert torch.isclose(loss, manual)

    loss.backward()
    grad_per_channel = logits.grad.abs().sum(dim=(2, 3))  # [R, K]
    on_gt = torch.zeros_like(grad_per_channel, dtype=torch.bool)
    on_gt[torch.arange(len(fg)), fg.gt_classes] = True
    assert (grad_per_channel[on_gt] > 0).all() and (grad_per_channel[~on_gt] == 0).all()

    perfect = (targets * 40 - 20)[:, None].expand(-1, 3, -1, -1).clone()
    perfect[torch.arange(len(fg)), (fg.gt_classes + 1) % 3] = 20.0  # other classes: anything
    assert mask_rcnn_loss(perfect, [fg], [gt]) < 1e-6
    # class-agnostic: one channel for all
    assert torch.isclose(mask_rcnn_loss(perfect[:, :1] * 0, [fg], [gt]), torch.tensor(0.6931), atol=1e-4)


def test_loss_without_foreground_is_zero_and_differentiable():
    logits = torch.randn(0, 3, 28, 28, requires_grad=True)
    empty = Instances((20, 20), proposal_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64))
    loss = mask_rcnn_loss(logits, [empty], [two_objects()])
    assert loss.item() == 0.0
    loss.backward()


def test_inference_takes_the_predicted_class_channel():
    logits = torch.zeros(3, 2, 4, 4)
    logits[:, 1] = 5.0  # class 1 predicts the whole box, class 0 half of it
    logits[:, 0, :, :2] = 5.0
    logits[:, 0, :, 2:] = -5.0
    dets = [
        Instances((20, 20), pred_classes=torch.tensor([0, 1])),
        Instances((20, 20), pred_classes=torch.tensor([1])),
    ]
    out = mask_rcnn_inference(logits, dets)
    assert out[0].pred_masks.shape == (2, 1, 4, 4) and out[1].pred_masks.shape == (1, 1, 4, 4)
    assert torch.allclose(out[0].pred_masks[0, 0], torch.sigmoid(logits[0, 0]))
    assert torch.allclose(out[0].pred_masks[1, 0], torch.sigmoid(logits[1, 1]))
    assert torch.allclose(out[1].pred_masks[0, 0], torch.sigmoid(logits[2, 1]))
    empty = mask_rcnn_inference(torch.zeros(0, 2, 4, 4), [Instances((20, 20), pred_classes=torch.zeros(0, dtype=torch.int64))])
    assert empty[0].pred_masks.shape == (0, 1, 4, 4)


def test_head_losses_weight():
    gt = two_objects()
    (fg,), _ = select_foreground_proposals([sampled_rois(gt)], num_classes=3)
    head = MaskRCNNConvUpsampleHead(input_shape=ShapeSpec(channels=4, height=2, width=2), num_classes=3, loss_weight=2.0)
    logits = torch.randn(len(fg), 3, 4, 4)
    assert torch.isclose(head.losses(logits, [fg], [gt])["loss_mask"], 2 * mask_rcnn_loss(logits, [fg], [gt]))


@pytest.mark.parametrize("agnostic", [False, True])
def test_head_learns_a_mask(agnostic):
    """A few hundred steps on two RoIs whose features encode their class: the loss falls."""
    torch.manual_seed(0)
    gt = two_objects()
    (fg,), _ = select_foreground_proposals([sampled_rois(gt)], num_classes=3)
    head = MaskRCNNConvUpsampleHead(
        input_shape=ShapeSpec(channels=4, height=2, width=2), num_classes=3, conv_dims=(8,), deconv_dim=8,
        cls_agnostic_mask=agnostic,
    )
    x = torch.randn(len(fg), 4, 2, 2)
    opt = torch.optim.Adam(head.parameters(), lr=0.02)
    first = None
    for _ in range(150):
        loss = mask_rcnn_loss(head(x), [fg], [gt])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
