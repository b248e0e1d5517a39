"""Box deltas: encode a target box relative to a reference box, and decode it back.

The parametrization of R-CNN (Girshick et al. 2014, appendix C), used unchanged by
Fast/Faster/Mask R-CNN: for a reference box P (anchor or proposal) and target G,

    dx = wx * (Gx - Px) / Pw      dw = ww * log(Gw / Pw)
    dy = wy * (Gy - Py) / Ph      dh = wh * log(Gh / Ph)

with (x, y) box centers and w = x1 - x0 (no "+1": continuous coordinates, as torchvision
and detectron2). Box coordinates are XYXY absolute.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Box2BoxTransform", "smooth_l1_or_l1"]

# Largest log-scale a decoded box may grow by; without it exp() overflows early in training.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class Box2BoxTransform:
    """Encode/decode boxes with per-coordinate weights ``(wx, wy, ww, wh)``.

    RPNs use weights (1, 1, 1, 1); Fast R-CNN heads use (10, 10, 5, 5), which equals
    normalizing the regression targets by std (0.1, 0.1, 0.2, 0.2) as in the papers.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = DEFAULT_SCALE_CLAMP,
    ):
        if len(weights) != 4:
            raise ValueError(f"Box2BoxTransform weights must have 4 values, got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """Deltas that turn ``src_boxes`` into ``target_boxes``.

        Args:
            src_boxes (Tensor[N, 4]): reference boxes, XYXY.
            target_boxes (Tensor[N, 4]): targets, XYXY.
        Returns:
            Tensor[N, 4]: (dx, dy, dw, dh).
        """
        src_boxes = src_boxes.to(target_boxes.dtype)
        src_w = src_boxes[:, 2] - src_boxes[:, 0]
        src_h = src_boxes[:, 3] - src_boxes[:, 1]
        src_x = src_boxes[:, 0] + 0.5 * src_w
        src_y = src_boxes[:, 1] + 0.5 * src_h
        tgt_w = target_boxes[:, 2] - target_boxes[:, 0]
        tgt_h = target_boxes[:, 3] - target_boxes[:, 1]
        tgt_x = target_boxes[:, 0] + 0.5 * tgt_w
        tgt_y = target_boxes[:, 1] + 0.5 * tgt_h
        wx, wy, ww, wh = self.weights
        return torch.stack(
            (
                wx * (tgt_x - src_x) / src_w,
                wy * (tgt_y - src_y) / src_h,
                ww * torch.log(tgt_w / src_w),
                wh * torch.log(tgt_h / src_h),
            ),
            dim=1,
        )

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Apply ``deltas`` to ``boxes``.

        Args:
            deltas (Tensor[N, 4*K]): K sets of (dx, dy, dw, dh) per box (K=1 for class-agnostic).
            boxes (Tensor[N, 4]): reference boxes, XYXY.
        Returns:
            Tensor[N, 4*K]: decoded XYXY boxes.
        """
        deltas = deltas.float()  # exp() in half precision overflows too easily
        boxes = boxes.to(deltas.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        d = deltas.reshape(deltas.shape[0], deltas.shape[1] // 4, 4)  # also for zero boxes
        dx = d[..., 0] / wx
        dy = d[..., 1] / wy
        dw = (d[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (d[..., 3] / wh).clamp(max=self.scale_clamp)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * torch.exp(dw) * widths[:, None]
        half_h = 0.5 * torch.exp(dh) * heights[:, None]
        pred = torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1
        )
        return pred.reshape(deltas.shape)


def smooth_l1_or_l1(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Summed smooth-L1 loss (plain L1 when ``beta == 0``).

    Args:
        pred, target (Tensor[N, 4]).
    Returns:
        scalar Tensor: the sum over all elements (callers normalize).
    """
    if beta < 1e-5:
        return torch.abs(pred - target).sum()
    return torch.nn.functional.smooth_l1_loss(pred, target, beta=beta, reduction="sum")
