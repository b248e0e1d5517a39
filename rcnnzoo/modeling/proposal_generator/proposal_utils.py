"""Selecting proposals from dense per-anchor predictions, batched across images."""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from rcnnzoo.modeling.box_regression import Box2BoxTransform
from rcnnzoo.structures import Boxes, Instances

__all__ = ["find_top_rpn_proposals", "add_ground_truth_to_proposals"]


def _top_per_level(
    anchors: list[torch.Tensor],
    logits: list[torch.Tensor],
    deltas: list[torch.Tensor],
    pre_nms_topk: int,
    box2box_transform: Box2BoxTransform,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k anchors of each level, decoded; returns boxes (N, K, 4), scores (N, K), level ids (K,)."""
    boxes, scores, levels = [], [], []
    n = logits[0].shape[0]
    for level, (a, lg, d) in enumerate(zip(anchors, logits, deltas)):
        k = min(pre_nms_topk, lg.shape[1])
        top_scores, top_idx = lg.topk(k, dim=1)  # sorted, (N, k)
        top_deltas = d.gather(1, top_idx[..., None].expand(-1, -1, 4))
        top_anchors = a[top_idx]  # (N, k, 4)
        decoded = box2box_transform.apply_deltas(top_deltas.reshape(-1, 4), top_anchors.reshape(-1, 4))
        boxes.append(decoded.view(n, k, 4))
        scores.append(top_scores)
        levels.append(torch.full((k,), level, dtype=torch.int64, device=lg.device))
    return torch.cat(boxes, dim=1), torch.cat(scores, dim=1), torch.cat(levels)


def find_top_rpn_proposals(
    anchors: list[torch.Tensor],
    pred_logits: list[torch.Tensor],
    pred_deltas: list[torch.Tensor],
    image_sizes: list[tuple[int, int]],
    *,
    box2box_transform: Box2BoxTransform,
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    score_thresh: float = 0.0,
) -> list[Instances]:
    """Keep the best proposals of each image.

    Per level, the ``pre_nms_topk`` highest-scoring anchors are decoded; boxes are clipped
    to their image, tiny or non-finite ones dropped (and, with ``score_thresh > 0``, those whose
    objectness probability ``sigmoid(logit)`` is below it), NMS runs per (image, level) pair in
    one batched call, and the ``post_nms_topk`` best of each image are kept.

    Args:
        anchors: per level, Tensor[A_l, 4].
        pred_logits: per level, Tensor[N, A_l].
        pred_deltas: per level, Tensor[N, A_l, 4].
        image_sizes: (h, w) of each image.
    Returns:
        per image, Instances(proposal_boxes: Boxes[P], objectness_logits: Tensor[P]), best first.
    """
    boxes, scores, levels = _top_per_level(anchors, pred_logits, pred_deltas, pre_nms_topk, box2box_transform)
    n, k = scores.shape
    device = scores.device
    sizes = torch.tensor(image_sizes, device=device, dtype=boxes.dtype)  # (N, 2) as (h, w)
    upper = sizes[:, [1, 0, 1, 0]][:, None, :]  # (N, 1, 4): w, h, w, h
    boxes = torch.minimum(boxes.clamp(min=0), upper)

    wh = boxes[..., 2:] - boxes[..., :2]
    keep = (wh > min_box_size).all(dim=-1) & torch.isfinite(boxes).all(dim=-1) & torch.isfinite(scores)
    if score_thresh > 0:
        # on the probability, as torchvision's rpn_score_thresh: a threshold on the logit would
        # round differently at the boundary
        keep &= torch.sigmoid(scores) >= score_thresh
    image_ids = torch.arange(n, device=device)[:, None].expand(n, k)
    group = image_ids * len(anchors) + levels[None, :]

    flat_keep = keep.flatten().nonzero().squeeze(1)
    flat_boxes = boxes.reshape(-1, 4)[flat_keep]
    flat_scores = scores.flatten()[flat_keep]
    flat_images = image_ids.flatten()[flat_keep]
    kept = batched_nms(flat_boxes, flat_scores, group.flatten()[flat_keep], nms_thresh)  # sorted by score

    results = []
    kept_images = flat_images[kept]
    for i, size in enumerate(image_sizes):
        idx = kept[kept_images == i][:post_nms_topk]
        results.append(
            Instances(size, proposal_boxes=Boxes(flat_boxes[idx]), objectness_logits=flat_scores[idx])
        )
    return results


def add_ground_truth_to_proposals(targets: list[Instances], proposals: list[Instances]) -> list[Instances]:
    """Append each image's ground-truth boxes to its proposals (logit = a large value).

    Early in training the RPN proposes little that overlaps the objects; the ground truth
    guarantees the box head sees positives from the first iteration.
    """
    out = []
    for gt, props in zip(targets, proposals):
        gt_boxes = gt.gt_boxes.tensor.to(props.proposal_boxes.tensor.dtype)
        # logit of probability 1 - 1e-10: finite, and above any real proposal
        logits = torch.full((len(gt_boxes),), 23.0, device=gt_boxes.device, dtype=props.objectness_logits.dtype)
        extra = Instances(props.image_size, proposal_boxes=Boxes(gt_boxes), objectness_logits=logits)
        out.append(Instances.cat([props, extra]))
    return out
