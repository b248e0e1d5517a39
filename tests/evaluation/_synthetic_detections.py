"""A small synthetic detection set and an imperfect detector's outputs on it, for evaluator tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rcnnzoo.structures import Boxes, BoxMode, Instances

CLASSES = ["cat", "dog", "bird"]
# Non-contiguous dataset category ids, like COCO's: contiguous k <-> DATASET_IDS[k].
DATASET_IDS = [3, 7, 12]
HEIGHT, WIDTH = 240, 320


def make_dataset_dicts(num_images: int = 8, seed: int = 0, with_crowd: bool = True) -> list[dict]:
    """Images with 1-4 boxes each, mixing small (<32^2), medium and large (>96^2) areas."""
    rng = np.random.default_rng(seed)
    dicts = []
    for i in range(num_images):
        anns = []
        for _ in range(int(rng.integers(1, 5))):
            side = float(rng.choice([18.0, 50.0, 130.0])) * rng.uniform(0.85, 1.15)
            bw, bh = side * rng.uniform(0.8, 1.25), side
            x0, y0 = rng.uniform(0, WIDTH - bw), rng.uniform(0, HEIGHT - bh)
            anns.append(
                {
                    "bbox": [x0, y0, x0 + bw, y0 + bh],
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": int(rng.integers(len(CLASSES))),
                    "iscrowd": 0,
                }
            )
        dicts.append(
            {
                "file_name": f"img{i}.jpg",
                "height": HEIGHT,
                "width": WIDTH,
                "image_id": 100 + i,
                "annotations": anns,
            }
        )
    if with_crowd:  # a crowd region (XYWH, to exercise the conversion): detections on it are ignored
        dicts[0]["annotations"].append(
            {"bbox": [5.0, 5.0, 60.0, 40.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1, "iscrowd": 1}
        )
    return dicts


def ground_truth_predictions(dicts: list[dict]) -> dict[int, Instances]:
    """The ground truth itself (crowd regions left out) as detections with score 1."""
    out = {}
    for d in dicts:
        anns = [a for a in d["annotations"] if not a["iscrowd"]]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        out[d["image_id"]] = Instances(
            (d["height"], d["width"]),
            pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
            scores=torch.ones(len(anns)),
            pred_classes=torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
        )
    return out


def noisy_predictions(dicts: list[dict], seed: int = 1) -> dict[int, Instances]:
    """An imperfect detector: jittered hits, misses, wrong classes, duplicates, false positives."""
    rng = np.random.default_rng(seed)
    out = {}
    for d in dicts:
        boxes, scores, classes = [], [], []
        for a in d["annotations"]:
            if a["iscrowd"] or rng.uniform() < 0.2:  # missed
                continue
            x0, y0, x1, y1 = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            size = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
            box = np.array([x0, y0, x1, y1]) + rng.normal(0, 0.08, 4) * size
            cls = a["category_id"] if rng.uniform() < 0.85 else int(rng.integers(len(CLASSES)))
            boxes.append(box)
            scores.append(rng.uniform(0.3, 1.0))
            classes.append(cls)
            if rng.uniform() < 0.25:  # a duplicate with a lower score
                boxes.append(box + rng.normal(0, 0.03, 4) * size)
                scores.append(scores[-1] * 0.7)
                classes.append(cls)
        for _ in range(int(rng.integers(0, 3))):  # false positives anywhere
            x0, y0 = rng.uniform(0, WIDTH - 40), rng.uniform(0, HEIGHT - 40)
            s = rng.uniform(10, 40)
            boxes.append(np.array([x0, y0, x0 + s, y0 + s]))
            scores.append(rng.uniform(0.05, 0.9))
            classes.append(int(rng.integers(len(CLASSES))))
        out[d["image_id"]] = Instances(
            (d["height"], d["width"]),
            pred_boxes=Boxes(torch.tensor(np.array(boxes), dtype=torch.float32).reshape(-1, 4)),
            scores=torch.tensor(scores, dtype=torch.float32),
            pred_classes=torch.tensor(classes, dtype=torch.int64),
        )
    return out


class LookupModel(nn.Module):
    """A stand-in detector returning fixed Instances per image id (the eval-mode output format)."""

    def __init__(self, predictions: dict):
        super().__init__()
        self.predictions = predictions
        self.dummy = nn.Parameter(torch.zeros(1))  # so .eval()/.training behave as on a real model
        self.calls = 0
        self.grad_enabled: list[bool] = []
        self.training_flags: list[bool] = []

    def forward(self, inputs: list[dict]) -> list[dict]:
        self.calls += 1
        self.grad_enabled.append(torch.is_grad_enabled())
        self.training_flags.append(self.training)
        return [{"instances": self.predictions[x["image_id"]]} for x in inputs]


def as_loader(dicts: list[dict], batch_size: int = 2) -> list[list[dict]]:
    """Model-input batches (image_id, height, width, file_name) in dataset order."""
    inputs = [{k: d[k] for k in ("image_id", "height", "width", "file_name")} for d in dicts]
    return [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
