"""rcnnzoo.layers.batched_nms_topk against torchvision.ops.batched_nms(...)[:topk]: the same indices
on heavily overlapping per-class candidates for every topk, when the first prefix is too short
(it grows), below the size where it just calls torchvision, with no boxes, one class, NaN scores,
and with tied scores (the same scores in order, and the same boxes up to the order of ties)."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

import rcnnzoo.layers.nms as nms_module
from rcnnzoo.layers import batched_nms_topk


def _candidates(gen: torch.Generator, num_rois: int, num_classes: int, num_objects: int = 15):
    """Box post-processing's input: every (RoI, class) pair, RoIs crowding around a few objects
    and each class's box a small shift of its RoI. Returns boxes (Tensor[R*C, 4]), distinct
    scores (Tensor[R*C]) and classes (Tensor[R*C])."""
    center = torch.rand(num_objects, 2, generator=gen) * 600 + 100
    size = torch.rand(num_objects, 2, generator=gen) * 150 + 30
    obj = torch.randint(num_objects, (num_rois,), generator=gen)
    c = center[obj] + torch.randn(num_rois, 2, generator=gen) * size[obj] * 0.15
    s = size[obj] * (1 + 0.15 * torch.randn(num_rois, 2, generator=gen))
    rois = torch.cat([c - s / 2, c + s / 2], dim=1)
    boxes = rois[:, None] + torch.randn(num_rois, num_classes, 4, generator=gen) * 4
    num = num_rois * num_classes
    scores = (torch.randperm(num, generator=gen).float() + 1) / num
    classes = torch.arange(num_classes).expand(num_rois, -1)
    return boxes.reshape(-1, 4), scores, classes.reshape(-1)


def _assert_same(boxes, scores, classes, iou, topks):
    full = batched_nms(boxes, scores, classes, iou)
    for topk in topks:
        ours = batched_nms_topk(boxes, scores, classes, iou, topk)
        assert ours.dtype == torch.int64
        assert torch.equal(ours, full if topk < 0 else full[:topk]), f"topk={topk}"


@pytest.mark.parametrize("iou", [0.5, 0.7])
def test_equals_torchvision_on_overlapping_candidates(iou):
    boxes, scores, classes = _candidates(torch.Generator().manual_seed(0), 300, 91)
    survivors = len(batched_nms(boxes, scores, classes, iou))
    assert 1000 < survivors < len(boxes)
    _assert_same(boxes, scores, classes, iou, [0, 1, 100, 1000, -1, survivors, survivors + 1, 10**6])


def test_prefix_grows_when_too_few_survive(monkeypatch):
    """Each class's 200 best boxes are one object's near copies, so the first prefix (400 boxes)
    keeps 5; the next (1600) holds the spread-out lower scorers and is enough."""
    gen = torch.Generator().manual_seed(1)
    num_classes, per_class, crowd = 5, 1000, 200
    xy = torch.rand(num_classes, per_class, 2, generator=gen) * 2000
    wh = torch.rand(num_classes, per_class, 2, generator=gen) * 40 + 20
    xy[:, :crowd] = torch.tensor([500.0, 500.0]) + torch.randn(num_classes, crowd, 2, generator=gen)
    wh[:, :crowd] = 100
    boxes = torch.cat([xy, xy + wh], dim=2).reshape(-1, 4)
    rank = torch.randperm(num_classes * per_class, generator=gen).float().reshape(num_classes, per_class)
    scores = torch.where(torch.arange(per_class) < crowd, 1 + rank, rank / 10**4).reshape(-1)
    classes = torch.arange(num_classes).repeat_interleave(per_class)

    sizes = []
    per_class_nms = nms_module._per_class_nms

    def spy(boxes, scores, idxs, iou_threshold, subset):
        kept = per_class_nms(boxes, scores, idxs, iou_threshold, subset)
        sizes.append((len(subset), len(kept)))
        return kept

    monkeypatch.setattr(nms_module, "_per_class_nms", spy)
    _assert_same(boxes, scores, classes, 0.5, [100])
    assert [size for size, _ in sizes] == [400, 1600]
    assert sizes[0][1] < 100 <= sizes[1][1]


def test_more_wanted_than_survive_reaches_everything():
    boxes, scores, classes = _candidates(torch.Generator().manual_seed(2), 100, 20, num_objects=3)
    survivors = len(batched_nms(boxes, scores, classes, 0.5))
    assert 4 * (survivors + 1) < len(boxes)  # so not handed to torchvision outright
    _assert_same(boxes, scores, classes, 0.5, [survivors, survivors + 1])


@pytest.mark.parametrize("num_rois,topk", [(10, 100), (25, 20), (100, 1000)])  # 400, 1000, 4000 boxes
def test_small_inputs_call_torchvision(num_rois, topk):
    # up to max(4 * topk, 1000) boxes: torchvision's batched_nms itself, offset trick included
    boxes, scores, classes = _candidates(torch.Generator().manual_seed(3), num_rois, 40)
    _assert_same(boxes, scores, classes, 0.5, [topk])


def test_empty_and_topk_zero():
    empty = batched_nms_topk(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5, 100)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    boxes, scores, classes = _candidates(torch.Generator().manual_seed(4), 200, 30)
    none = batched_nms_topk(boxes, scores, classes, 0.5, 0)
    assert none.shape == (0,) and none.dtype == torch.int64


def test_single_class():
    boxes, scores, _ = _candidates(torch.Generator().manual_seed(5), 5000, 1, num_objects=100)
    classes = torch.zeros(len(boxes), dtype=torch.int64)
    _assert_same(boxes, scores, classes, 0.5, [1, 100, -1])


def test_nan_scores_rank_first_like_torchvision():
    boxes, scores, classes = _candidates(torch.Generator().manual_seed(6), 200, 30)
    scores[torch.randperm(len(scores), generator=torch.Generator().manual_seed(7))[:20]] = float("nan")
    full = batched_nms(boxes, scores, classes, 0.5)
    ours = batched_nms_topk(boxes, scores, classes, 0.5, 100)
    # NaN scores cannot be compared by value, their indices can
    assert torch.equal(ours, full[:100])


@pytest.mark.parametrize("topk", [100, 1000, -1])
def test_tied_scores_keep_the_same_boxes(topk):
    boxes, _, classes = _candidates(torch.Generator().manual_seed(8), 300, 91)
    scores = torch.randint(0, 50, (len(boxes),), generator=torch.Generator().manual_seed(9)) / 50
    full = batched_nms(boxes, scores, classes, 0.5)
    ref = full if topk < 0 else full[:topk]
    ours = batched_nms_topk(boxes, scores, classes, 0.5, topk)
    assert torch.equal(scores[ours], scores[ref])
    # only the order of equal scores may differ: the same boxes, apart from which of the boxes
    # tied with the last one taken made the cut
    last = scores[ref[-1]]
    assert set(ours[scores[ours] > last].tolist()) == set(ref[scores[ref] > last].tolist())
    tied = set(full[scores[full] == last].tolist())
    assert set(ours[scores[ours] == last].tolist()) <= tied
    if topk < 0:
        assert set(ours.tolist()) == set(ref.tolist())
