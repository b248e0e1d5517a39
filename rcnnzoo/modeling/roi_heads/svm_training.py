"""Training per-class linear SVMs on cached RoI features with hard negative mining (R-CNN §2.3).

R-CNN (and SPPnet after it) fine-tune the network with a softmax, cache every RoI's fc7 feature,
and then train one linear SVM per class on the cache: positives are the class's ground-truth
boxes, negatives the RoIs overlapping no box of that class by 0.3 IoU or more, and since the
negatives far outnumber what fits in one solve, the solver starts from a sample of them and
repeatedly adds the ones the current SVM gets wrong ("hard negatives", margin violators).
:meth:`LinearSVMOutputLayers.load_svms` puts the result into a detector.
"""

from __future__ import annotations

import logging

import torch

__all__ = ["train_linear_svms", "fit_linear_svm"]

logger = logging.getLogger(__name__)


def fit_linear_svm(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    C: float,
    loss_type: str = "hinge",
    epochs: int = 100,
    sample_weight: torch.Tensor | None = None,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One linear SVM: minimise ``||w||^2 / 2 + C * sum_i c_i loss(y_i (w . x_i + b))`` (liblinear's
    primal; the bias is not regularised, where liblinear regularises it as an extra feature).

    Solved with full-batch L-BFGS and a strong-Wolfe line search. The squared hinge is smooth
    and L-BFGS converges to its optimum; the plain hinge has kinks at margin 1, where L-BFGS
    stops once the line search makes no more progress, close to (not exactly at) the optimum.

    Args:
        x (Tensor[N, D]): features. y (Tensor[N]): labels in {-1, 1}.
        C: weight of the loss against the regulariser.
        loss_type: "hinge" or "squared_hinge".
        epochs: L-BFGS iterations (each at least one pass over ``x``).
        sample_weight (Tensor[N], optional): ``c_i``, default 1.
        init: (w Tensor[D], b scalar Tensor) to start from (a warm start between mining rounds).
    Returns:
        (w Tensor[D], b scalar Tensor), float64 for float64 ``x``, else float32.
    """
    if loss_type not in ("hinge", "squared_hinge"):
        raise ValueError(f"loss_type must be 'hinge' or 'squared_hinge', got {loss_type!r}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    y = y.to(dtype)
    c = torch.full_like(y, C) if sample_weight is None else C * sample_weight.to(dtype)
    w = x.new_zeros(x.shape[1]) if init is None else init[0].detach().to(dtype).clone()
    b = x.new_zeros(()) if init is None else init[1].detach().to(dtype).clone()
    w.requires_grad_(True)
    b.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [w, b], max_iter=epochs, history_size=20, line_search_fn="strong_wolfe", tolerance_change=1e-12
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        slack = torch.relu(1.0 - y * (x @ w + b))
        loss = slack * slack if loss_type == "squared_hinge" else slack
        value = 0.5 * w.dot(w) + (c * loss).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(objective)
    return w.detach(), b.detach()


def train_linear_svms(
    features: torch.Tensor,
    labels: torch.Tensor,
    ious: torch.Tensor,
    *,
    C: float = 1e-3,
    loss_type: str = "hinge",
    epochs: int = 100,
    hard_negative_rounds: int = 3,
    initial_negatives: int = 5000,
    negative_iou_thresh: float = 0.3,
    hard_thresh: float = -1.0,
    evict_thresh: float = -1.2,
    positive_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest linear SVMs for K classes, with R-CNN's hard negative mining.

    For each class k: the positives are the samples labelled k, the negative pool the samples not
    labelled k whose IoU with every ground-truth box of class k is below ``negative_iou_thresh``
    (the rest are ignored). Training starts from all positives and ``initial_negatives`` random
    negatives (the cache), fitted once (:func:`fit_linear_svm`). Each mining round then scores the
    whole pool with the current SVM, drops cached negatives scored below ``evict_thresh`` (easy
    ones, as R-CNN's code does, to keep the cache small), adds every pool negative not in the
    cache that scores above ``hard_thresh`` (-1: it violates the margin), and refits, warm-started.
    Mining stops after ``hard_negative_rounds`` rounds or at the first round without a hard
    negative.

    R-CNN mines image by image over the whole training set, with features scaled to an average
    L2 norm of 20 (C = 0.001 assumes that scale) and ``positive_weight`` 2; here the pool is one
    in-memory tensor, so the caller scales the features and chooses where they come from
    (ground-truth boxes as the positives reproduce R-CNN).

    Args:
        features (Tensor[N, D]): cached RoI features (e.g. fc7).
        labels (Tensor[N] int64): class in [0, K) of the positives, K (background) otherwise.
        ious (Tensor[N, K]): each sample's best IoU with the ground truth of each class
            (:func:`~rcnnzoo.modeling.roi_heads.svm_head.class_max_ious`); defines K.
        C, loss_type, epochs, positive_weight: see :func:`fit_linear_svm`.
        hard_negative_rounds: mining rounds after the first fit (R-CNN's loop is one pass
            over the training images; SPPnet "iterated once").
        initial_negatives: random negatives in the first cache, per class.
        negative_iou_thresh: 0.3 (R-CNN's choice by grid search on VOC).
        hard_thresh, evict_thresh: the margins that make a negative hard / easy.
        generator: for the random first cache.
    Returns:
        (weights Tensor[K, D], biases Tensor[K]), in ``features``' dtype. A class without positives
        gets w = 0, b = -1 (it never fires), with a warning.
    """
    num_samples, dim = features.shape
    if labels.shape != (num_samples,) or ious.dim() != 2 or ious.shape[0] != num_samples:
        raise ValueError(
            f"features {tuple(features.shape)}, labels {tuple(labels.shape)} and ious {tuple(ious.shape)} "
            "must describe the same N samples: Tensor[N, D], Tensor[N], Tensor[N, K]"
        )
    num_classes = ious.shape[1]
    weights = features.new_zeros((num_classes, dim))
    biases = features.new_full((num_classes,), -1.0)
    for k in range(num_classes):
        positives = (labels == k).nonzero().squeeze(1)
        pool = ((labels != k) & (ious[:, k] < negative_iou_thresh)).nonzero().squeeze(1)
        if len(positives) == 0:
            logger.warning("SVM for class %d: no positive samples; it will never fire", k)
            continue
        order = torch.randperm(len(pool), generator=generator, device="cpu").to(pool.device)
        cache = pool[order[:initial_negatives]]
        fit = {"C": C, "loss_type": loss_type, "epochs": epochs}
        w, b = _fit_on(features, positives, cache, positive_weight, fit, init=None)
        for round_ in range(hard_negative_rounds):
            scores = features[pool].to(w.dtype) @ w + b
            in_cache = torch.zeros(num_samples, dtype=torch.bool, device=features.device)
            in_cache[cache] = True
            cached = in_cache[pool]
            keep = scores[cached] >= evict_thresh
            cache = pool[cached][keep]  # now in pool order
            hard = pool[(scores > hard_thresh) & ~cached]
            logger.info(
                "SVM for class %d, round %d: %d hard negatives added, %d easy ones evicted, cache %d",
                k,
                round_ + 1,
                len(hard),
                int((~keep).sum()),
                len(cache) + len(hard),
            )
            if len(hard) == 0:
                break
            cache = torch.cat([cache, hard])
            w, b = _fit_on(features, positives, cache, positive_weight, fit, init=(w, b))
        weights[k] = w.to(features.dtype)
        biases[k] = b.to(features.dtype)
    return weights, biases


def _fit_on(
    features: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    positive_weight: float,
    fit: dict,
    init: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit one SVM on ``features[positives]`` (+1) and ``features[negatives]`` (-1)."""
    index = torch.cat([positives, negatives])
    y = torch.cat([torch.ones(len(positives)), -torch.ones(len(negatives))]).to(features.device)
    weight = torch.where(y > 0, torch.full_like(y, positive_weight), torch.ones_like(y))
    return fit_linear_svm(features[index], y, sample_weight=weight, init=init, **fit)
