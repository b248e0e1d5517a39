"""R-CNN's class-specific box regressors, fitted by ridge regression on cached features (appendix C).

For each class k, a linear map from a proposal's pool5 feature to the deltas that move the
proposal onto the ground-truth box it overlaps most, fitted by regularised least squares on the
training proposals that overlap a box of class k by IoU >= 0.6 (the paper's threshold; further
away, "the task of transforming P to G does not make sense"). The deltas are those of
:class:`~rcnnzoo.modeling.box_regression.Box2BoxTransform`, so the regressors' output decodes as
any predictor's (:meth:`RCNN.load_box_regressors <rcnnzoo.modeling.RCNN.load_box_regressors>`).
"""

from __future__ import annotations

import logging

import torch

from rcnnzoo.modeling.box_regression import Box2BoxTransform

__all__ = ["fit_ridge_regression", "fit_class_box_regressors"]

logger = logging.getLogger(__name__)


def fit_ridge_regression(x: torch.Tensor, y: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``argmin_{W, b} ||x W + b - y||^2 + lam ||W||^2``, the bias not regularised.

    Solved exactly in float64 on centred data, through the D x D normal equations or, with fewer
    samples than features (VGG16's 25088-d pool5), the N x N dual ``W = x^T (x x^T + lam I)^-1 y``.

    Args:
        x (Tensor[N, D]): features. y (Tensor[N, T]): targets.
        lam: the regularisation strength (R-CNN: 1000, on features scaled to a mean norm of 20).
    Returns:
        (W Tensor[D, T], b Tensor[T]), float32 (float64 for float64 ``x``).
    """
    if lam <= 0:
        raise ValueError(f"lam must be positive (the dual needs it), got {lam}")
    xd, yd = x.double(), y.double()
    x_mean, y_mean = xd.mean(dim=0), yd.mean(dim=0)
    xc, yc = xd - x_mean, yd - y_mean
    num, dim = xc.shape
    if num >= dim:
        gram = xc.T @ xc + lam * torch.eye(dim, dtype=xd.dtype, device=xd.device)
        w = torch.linalg.solve(gram, xc.T @ yc)
    else:
        gram = xc @ xc.T + lam * torch.eye(num, dtype=xd.dtype, device=xd.device)
        w = xc.T @ torch.linalg.solve(gram, yc)
    b = y_mean - x_mean @ w
    dtype = torch.promote_types(x.dtype, torch.float32)
    return w.to(dtype), b.to(dtype)


def fit_class_box_regressors(
    features: torch.Tensor,
    proposal_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    num_classes: int,
    box2box_transform: Box2BoxTransform,
    lam: float = 1000.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ridge regressor per class from features to the deltas ``proposal -> gt``.

    Args:
        features (Tensor[N, D]): the proposals' features (R-CNN: pool5).
        proposal_boxes, gt_boxes (Tensor[N, 4]): each training proposal and the ground-truth box it
            overlaps most (already selected, e.g. IoU >= 0.6).
        gt_classes (Tensor[N] int64): that box's class, in [0, K).
        box2box_transform: the delta encoding of the predictor the regressors feed.
        lam: see :func:`fit_ridge_regression`.
    Returns:
        (weights Tensor[4K, D], biases Tensor[4K]), float32 (float64 for float64 ``features``):
        class k's deltas in rows ``4k .. 4k+3`` (the layout of a class-specific ``bbox_pred``). A
        class without samples gets zeros (its boxes stay as proposed), with a warning.
    """
    targets = box2box_transform.get_deltas(proposal_boxes, gt_boxes)
    dtype = torch.promote_types(features.dtype, torch.float32)  # float16 features give float32 weights
    weights = features.new_zeros((4 * num_classes, features.shape[1]), dtype=dtype)
    biases = features.new_zeros(4 * num_classes, dtype=dtype)
    for k in range(num_classes):
        rows = gt_classes == k
        if not bool(rows.any()):
            logger.warning("Box regressor of class %d: no training proposal; its boxes stay as proposed", k)
            continue
        w, b = fit_ridge_regression(features[rows], targets[rows], lam)
        weights[4 * k : 4 * k + 4] = w.T
        biases[4 * k : 4 * k + 4] = b
    return weights, biases
