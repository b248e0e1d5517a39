"""Sampling a fixed-size, class-balanced minibatch of anchors or RoIs."""

from __future__ import annotations

import torch

__all__ = ["subsample_labels"]


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly pick at most ``num_samples`` elements, at most ``positive_fraction`` positive.

    Negatives fill what positives leave free (the Faster R-CNN rule: 256 anchors, up to
    half positive, padded with negatives).

    Args:
        labels (Tensor[N]): -1 ignore, ``bg_label`` negative, any other value >= 0 positive.
        num_samples: total to sample.
        positive_fraction: largest share of positives.
        bg_label: the label value of negatives.
    Returns:
        pos_idx, neg_idx (Tensor[P], Tensor[Q] int64): indices into ``labels``, P + Q <= num_samples.
    """
    positive = ((labels != -1) & (labels != bg_label)).nonzero().squeeze(1)
    negative = (labels == bg_label).nonzero().squeeze(1)

    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)

    perm_pos = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
    perm_neg = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
    return positive[perm_pos], negative[perm_neg]
