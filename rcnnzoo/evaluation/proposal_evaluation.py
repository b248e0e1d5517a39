"""Box proposal recall: how many objects the proposals cover, whatever their class.

Average recall (AR) as defined by Hosang et al., "What makes for effective detection proposals?"
(TPAMI 2016): the recall of the objects averaged over IoU thresholds from 0.5 to 1, here the ten
thresholds 0.5:0.95:0.05 (COCO's, and detectron2's box proposal evaluation). AR correlates with
the detection AP the proposals lead to better than recall at any single IoU.

Each ground-truth box is matched to at most one proposal and each proposal to at most one box,
greedily by IoU (repeatedly take the highest-IoU pair left), as py-faster-rcnn and detectron2 do:
a proposal that covers two objects only counts for one. Crowd annotations are left out.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from rcnnzoo.structures import BoxMode
from rcnnzoo.utils import comm

from .coco_evaluation import convert_to_coco_dict
from .evaluator import EVALUATOR_REGISTRY, DatasetEvaluator, format_results_table

__all__ = ["ProposalEvaluator", "match_proposals_to_ground_truth", "recall_at_thresholds", "IOU_THRESHOLDS"]

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).round(2)
# COCO's object sizes by area in pixels of the original image (pycocotools' areaRng; bounds inclusive).
_AREA_RANGES = {
    "all": (0.0, math.inf),
    "s": (0.0, 32.0**2),
    "m": (32.0**2, 96.0**2),
    "l": (96.0**2, math.inf),
}


def match_proposals_to_ground_truth(iou: np.ndarray) -> np.ndarray:
    """Greedy one-to-one matching of proposals and ground-truth boxes by IoU.

    Args:
        iou: np.ndarray[P, G], IoU of every (proposal, ground-truth box) pair.
    Returns:
        np.ndarray[G] float64: the IoU of each ground-truth box with the proposal matched to it,
        0 for boxes left unmatched (when P < G).
    """
    iou = np.array(iou, dtype=np.float64, copy=True)
    matched = np.zeros(iou.shape[1], dtype=np.float64)
    for _ in range(min(iou.shape)):
        p, g = np.unravel_index(np.argmax(iou), iou.shape)
        matched[g] = iou[p, g]
        iou[p, :] = -1.0  # both are used up
        iou[:, g] = -1.0
    return matched


def recall_at_thresholds(matched_iou: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """np.ndarray[T]: the fraction of ground-truth boxes whose matched IoU reaches each threshold
    (NaN when there is no box)."""
    matched_iou = np.asarray(matched_iou, dtype=np.float64)
    if matched_iou.size == 0:
        return np.full(len(thresholds), np.nan)
    return (matched_iou[None, :] >= np.asarray(thresholds)[:, None]).mean(axis=1)


def _setting_key(area: str, limit: int) -> str:
    return f"AR{'' if area == 'all' else area}@{limit}"


def _ground_truth_by_image(dataset_name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """image id (as text) -> (non-crowd boxes float64[G, 4] XYXY, their areas float64[G]).

    Areas are COCO's (the mask's area when the annotation has a segmentation, else the box's),
    from :func:`convert_to_coco_dict`, so that small / medium / large mean what they mean there.
    """
    coco = convert_to_coco_dict(dataset_name)
    boxes: dict[str, list] = {str(im["id"]): [] for im in coco["images"]}
    areas: dict[str, list] = {str(im["id"]): [] for im in coco["images"]}
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        boxes[str(ann["image_id"])].append(ann["bbox"])
        areas[str(ann["image_id"])].append(ann["area"])
    return {
        key: (
            BoxMode.convert(
                np.asarray(boxes[key], dtype=np.float64).reshape(-1, 4), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS
            ),
            np.asarray(areas[key], dtype=np.float64),
        )
        for key in boxes
    }


@EVALUATOR_REGISTRY.register()
class ProposalEvaluator(DatasetEvaluator):
    """Recall of the model's proposals on a registered dataset's (non-crowd) objects.

    Reads ``outputs[i]["proposals"]`` (``Instances`` with ``proposal_boxes`` and
    ``objectness_logits``), so it scores a :class:`ProposalNetwork` or any detector whose outputs
    also carry its proposals. The boxes are taken in the input's ``height`` x ``width`` frame;
    proposals of another ``image_size`` (the resized image) are scaled to it. The best
    ``limit`` proposals by ``objectness_logits`` count at each limit.

    Results, under the task ``"box_proposals"`` (fractions in [0, 1]; K = the largest limit):

    * ``AR@{limit}`` for each limit: average recall over IoU 0.5:0.95:0.05;
    * ``ARs@K``, ``ARm@K``, ``ARl@K``: the same for COCO's small (< 32² px), medium and large
      (> 96² px) objects, NaN where the dataset has none;
    * ``R@0.5@K``, ``R@0.7@K``: recall at IoU 0.5 and 0.7.

    Args:
        dataset_name: a registered dataset (its metadata needs ``thing_classes``).
        limits: numbers of proposals per image to score at, e.g. (100, 300, 1000). An image with
            fewer proposals counts all it has.
        distributed: gather the per-image results of all processes and evaluate on the main one.
    """

    def __init__(
        self, dataset_name: str, limits: Sequence[int] = (100, 300, 1000), *, distributed: bool = True
    ):
        limits = sorted({int(k) for k in limits})
        if not limits or limits[0] < 1:
            raise ValueError(f"ProposalEvaluator limits must be positive numbers of proposals, got {limits}")
        self._dataset_name = dataset_name
        self._limits = limits
        self._distributed = distributed
        # loaded on the first process(): building an evaluator from a config must not load a dataset
        self._ground_truth: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._records: list[dict[str, Any]] = []

    def reset(self) -> None:
        self._records = []

    def _settings(self) -> list[tuple[str, int]]:
        """(area range, limit) pairs scored: every limit on all objects, the largest by size."""
        largest = self._limits[-1]
        return [("all", k) for k in self._limits] + [(a, largest) for a in ("s", "m", "l")]

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        if self._ground_truth is None:
            self._ground_truth = _ground_truth_by_image(self._dataset_name)
        for inp, out in zip(inputs, outputs):
            if "proposals" not in out:
                raise KeyError(
                    f"ProposalEvaluator needs outputs with 'proposals', got {sorted(out)}; evaluate a "
                    "ProposalNetwork (or a model whose outputs carry its proposals)"
                )
            key = str(inp["image_id"])
            if key not in self._ground_truth:
                raise KeyError(f"Image id {inp['image_id']!r} is not in dataset {self._dataset_name!r}")
            gt_boxes, gt_areas = self._ground_truth[key]
            boxes = self._best_boxes(inp, out["proposals"].to("cpu"))
            iou = box_iou(boxes, torch.from_numpy(gt_boxes)).numpy()  # [P, G], float64
            matched = {}
            for area, limit in self._settings():
                low, high = _AREA_RANGES[area]
                in_range = (gt_areas >= low) & (gt_areas <= high)
                matched[_setting_key(area, limit)] = match_proposals_to_ground_truth(iou[:limit, in_range])
            self._records.append(
                {"image_id": inp["image_id"], "num_proposals": len(boxes), "matched": matched}
            )

    def _best_boxes(self, inp: dict, proposals: Any) -> torch.Tensor:
        """Tensor[P, 4] float64: the best ``max(limits)`` proposal boxes, in the input's original frame."""
        order = torch.sort(proposals.objectness_logits, descending=True, stable=True).indices
        boxes = proposals.proposal_boxes.tensor[order[: self._limits[-1]]].double()
        in_h, in_w = proposals.image_size
        height, width = inp.get("height", in_h), inp.get("width", in_w)
        if (in_h, in_w) != (height, width):
            boxes = boxes * boxes.new_tensor([width / in_w, height / in_h] * 2)
        return boxes

    def _gather(self) -> list[dict[str, Any]] | None:
        records = self._records
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather(records, dst=0)
            if not comm.is_main_process():
                return None
            records = list(itertools.chain(*gathered))
        # a sampler that pads the dataset to a multiple of the world size repeats images
        unique: dict[str, dict[str, Any]] = {}
        for record in records:
            unique.setdefault(str(record["image_id"]), record)
        return list(unique.values())

    def evaluate(self) -> dict[str, dict[str, float]]:
        records = self._gather()
        if records is None:
            return {}
        if not records:
            logger.warning(
                "ProposalEvaluator(%r) received no images; nothing to evaluate", self._dataset_name
            )
            return {}
        largest = self._limits[-1]
        metrics: dict[str, float] = {}
        for area, limit in self._settings():
            key = _setting_key(area, limit)
            recalls = recall_at_thresholds(np.concatenate([r["matched"][key] for r in records]))
            metrics[key] = float(recalls.mean())
            if area == "all" and limit == largest:
                for t in (0.5, 0.7):
                    metrics[f"R@{t}@{limit}"] = float(recalls[int(np.flatnonzero(IOU_THRESHOLDS == t)[0])])
        num_gt = sum(len(r["matched"][_setting_key("all", largest)]) for r in records)
        mean_proposals = np.mean([r["num_proposals"] for r in records])
        logger.info(
            "Proposal recall on %s: %d images, %d objects, %.1f proposals per image (at most %d counted):\n%s",
            self._dataset_name,
            len(records),
            num_gt,
            mean_proposals,
            largest,
            format_results_table(metrics, columns=3),
        )
        return {"box_proposals": metrics}
