"""Matcher: assign each prediction (anchor or proposal) to a ground-truth box by IoU."""

from __future__ import annotations

import torch

__all__ = ["Matcher"]


class Matcher:
    """Match predictions to ground truth by thresholding the best IoU of each prediction.

    With ``thresholds=[0.3, 0.7]`` and ``labels=[0, -1, 1]`` (the RPN's setting): a best IoU
    in ``[0, 0.3)`` is labelled 0 (negative), ``[0.3, 0.7)`` -1 (ignored), ``>= 0.7`` 1
    (positive). ``allow_low_quality_matches`` adds the Faster R-CNN rule that, for every
    ground-truth box, the prediction(s) with the highest IoU to it are positive even when
    that IoU is below the threshold (ties all count, as in the paper's implementation).
    """

    def __init__(
        self, thresholds: list[float], labels: list[int], allow_low_quality_matches: bool = False
    ):
        thresholds = list(thresholds)
        if thresholds != sorted(thresholds):
            raise ValueError(f"Matcher thresholds must be increasing, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(
                f"Matcher needs len(labels) == len(thresholds) + 1, got {len(labels)} labels "
                f"for {len(thresholds)} thresholds"
            )
        if not all(label in (-1, 0, 1) for label in labels):
            raise ValueError(f"Matcher labels must be -1, 0 or 1, got {labels}")
        self.thresholds = [-float("inf"), *thresholds, float("inf")]
        self.labels = list(labels)
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            match_quality_matrix (Tensor[M, N]): IoU of M ground-truth boxes with N predictions.
        Returns:
            matches (Tensor[N] int64): index of the matched ground-truth box, in [0, M).
            match_labels (Tensor[N] int8): -1 ignore, 0 negative, 1 positive.
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError("match_quality_matrix must be a 2-D Tensor[M, N]")
        num_preds = match_quality_matrix.size(1)
        device = match_quality_matrix.device
        if match_quality_matrix.numel() == 0:
            matches = torch.zeros(num_preds, dtype=torch.int64, device=device)
            # No ground truth: every prediction is background.
            match_labels = torch.full((num_preds,), self.labels[0], dtype=torch.int8, device=device)
            return matches, match_labels

        matched_vals, matches = match_quality_matrix.max(dim=0)
        match_labels = torch.ones(num_preds, dtype=torch.int8, device=device)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_range = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_range] = label
        if self.allow_low_quality_matches:
            self._set_low_quality_matches(match_labels, match_quality_matrix)
        return matches, match_labels

    @staticmethod
    def _set_low_quality_matches(match_labels: torch.Tensor, quality: torch.Tensor) -> None:
        # Without this rule a small or oddly shaped box whose best anchor has IoU < 0.7 would
        # never get a positive anchor. Only predictions with IoU > 0 qualify, so an
        # unmatchable box (e.g. outside every anchor) does not promote a random anchor.
        best_per_gt, _ = quality.max(dim=1, keepdim=True)
        is_best = (quality == best_per_gt) & (best_per_gt > 0)
        match_labels[is_best.any(dim=0)] = 1
