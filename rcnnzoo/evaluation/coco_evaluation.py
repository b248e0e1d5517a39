"""COCO-style evaluation (box and mask AP) with the official pycocotools.

Predictions are turned into COCO "results" json entries, gathered across processes and scored
with ``pycocotools.cocoeval.COCOeval`` against either the dataset's own COCO json
(``metadata.json_file``) or a COCO dict built from the registered dataset dicts
(:func:`convert_to_coco_dict`), so any registered dataset can be scored the COCO way.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rcnnzoo.structures import BoxMode, Instances
from rcnnzoo.utils import comm
from rcnnzoo.utils.registry import did_you_mean

from .dataset_access import catalogs, dataset_metadata
from .evaluator import EVALUATOR_REGISTRY, DatasetEvaluator, format_results_table
from .file_io import atomic_write_json

__all__ = [
    "COCOEvaluator",
    "instances_to_coco_json",
    "convert_to_coco_dict",
    "summarize_coco_eval",
]

logger = logging.getLogger(__name__)

SUPPORTED_TASKS = ("bbox", "segm")
# Metric name -> (IoU threshold or None for the 0.50:0.95 mean, area range label), in
# pycocotools' summarize() order.
_AP_METRICS: dict[str, tuple[float | None, str]] = {
    "AP": (None, "all"),
    "AP50": (0.5, "all"),
    "AP75": (0.75, "all"),
    "APs": (None, "small"),
    "APm": (None, "medium"),
    "APl": (None, "large"),
}


# ---------------------------------------------------------------------------------------------
# Predictions -> COCO results json
# ---------------------------------------------------------------------------------------------


def _encode_masks(masks: torch.Tensor) -> list[dict]:
    """RLE-encode masks (Tensor[N, H, W] bool) into json-ready COCO RLE dicts."""
    array = np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8))  # [H, W, N]
    rles = mask_util.encode(array)
    for rle in rles:
        # pycocotools returns bytes; json needs str (pycocotools accepts both when decoding).
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def instances_to_coco_json(
    instances: Instances,
    image_id: Any,
    contiguous_to_dataset_id: Mapping[int, int] | None = None,
) -> list[dict]:
    """One COCO results entry per detection of one image.

    Args:
        instances: detections of one image, on the CPU, with ``pred_boxes`` (Boxes[N], XYXY
            absolute in the original image), ``scores`` (Tensor[N]), ``pred_classes``
            (Tensor[N] int64, contiguous 0..K-1) and optionally ``pred_masks`` (Tensor[N, H, W] bool).
        image_id: the dataset's id of the image.
        contiguous_to_dataset_id: maps contiguous class ids back to the dataset's category ids
            (identity when None).

    Returns:
        list of dicts ``{image_id, category_id, bbox (XYWH), score[, segmentation (RLE)]}``.
    """
    num = len(instances)
    if num == 0:
        return []
    boxes = BoxMode.convert(instances.pred_boxes.tensor.float(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    boxes = boxes.tolist()
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    if contiguous_to_dataset_id is not None:
        classes = [contiguous_to_dataset_id[c] for c in classes]
    rles = _encode_masks(instances.pred_masks.bool()) if instances.has("pred_masks") else None

    results = []
    for k in range(num):
        entry = {"image_id": image_id, "category_id": int(classes[k]), "bbox": boxes[k], "score": scores[k]}
        if rles is not None:
            entry["segmentation"] = rles[k]
        results.append(entry)
    return results


# ---------------------------------------------------------------------------------------------
# Dataset dicts -> COCO ground-truth dict
# ---------------------------------------------------------------------------------------------


def _segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """A COCO RLE (compressed, bytes counts) from polygons, uncompressed RLE or compressed RLE."""
    if isinstance(segmentation, list):  # polygons: list[list[float]]
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_util.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {
        "size": segmentation["size"],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }


def _json_ready_segmentation(segmentation: Any) -> Any:
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), bytes):
        return {"size": segmentation["size"], "counts": segmentation["counts"].decode("ascii")}
    return segmentation


def _dataset_id_lookup(metadata: Any, num_classes: int) -> dict[int, int]:
    """contiguous id -> dataset category id (identity when the metadata has no mapping)."""
    mapping = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    if not mapping:
        return {i: i for i in range(num_classes)}
    return {int(contiguous): int(dataset_id) for dataset_id, contiguous in mapping.items()}


def convert_to_coco_dict(dataset_name: str) -> dict:
    """Build a COCO ground-truth dict (the layout of ``instances_*.json``) from dataset dicts.

    Category ids are the dataset's own (through ``thing_dataset_id_to_contiguous_id`` when the
    metadata has it), image ids are the dicts' ``image_id`` unchanged. An annotation's ``area``
    is its mask area when it has a segmentation, else its box area; pycocotools uses it to
    sort objects into small / medium / large.
    """
    dataset_catalog, _ = catalogs()
    dataset_dicts = dataset_catalog.get(dataset_name)
    metadata = dataset_metadata(dataset_name)
    class_names = list(metadata.thing_classes)
    to_dataset_id = _dataset_id_lookup(metadata, len(class_names))

    categories = [{"id": to_dataset_id[i], "name": name} for i, name in enumerate(class_names)]
    images, annotations = [], []
    for record in dataset_dicts:
        height, width = int(record["height"]), int(record["width"])
        images.append(
            {
                "id": record["image_id"],
                "width": width,
                "height": height,
                "file_name": record.get("file_name", ""),
            }
        )
        for ann in record.get("annotations", []):
            annotations.append(_annotation_to_coco(ann, record["image_id"], height, width, to_dataset_id))
    # Annotation ids start at 1: COCOeval marks "unmatched" with id 0.
    for ann_id, ann in enumerate(annotations, start=1):
        ann["id"] = ann_id

    info = {
        "date_created": str(datetime.datetime.now()),
        "description": f"Generated by rcnnzoo from the registered dataset {dataset_name!r}",
    }
    logger.info(
        "Converted %d images and %d annotations of %r to COCO format",
        len(images),
        len(annotations),
        dataset_name,
    )
    return {
        "info": info,
        "images": images,
        "annotations": annotations,
        "categories": categories,
        "licenses": [],
    }


def _annotation_to_coco(
    ann: Mapping[str, Any], image_id: Any, height: int, width: int, to_dataset_id: Mapping[int, int]
) -> dict:
    """One dataset-dict annotation as a COCO annotation (without its ``id``)."""
    bbox = [float(v) for v in BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYWH_ABS)]
    coco_ann: dict[str, Any] = {
        "image_id": image_id,
        "bbox": bbox,
        "category_id": to_dataset_id[int(ann["category_id"])],
        "iscrowd": int(ann.get("iscrowd", 0)),
    }
    segmentation = ann.get("segmentation")
    if segmentation is not None:
        coco_ann["area"] = float(mask_util.area(_segmentation_to_rle(segmentation, height, width)))
        coco_ann["segmentation"] = _json_ready_segmentation(segmentation)
    else:
        coco_ann["area"] = bbox[2] * bbox[3]
    return coco_ann


def _quiet_coco(dataset: dict) -> COCO:
    """A pycocotools COCO object over an in-memory dict, without its prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# ---------------------------------------------------------------------------------------------
# COCOeval -> metrics
# ---------------------------------------------------------------------------------------------


def _mean_precision(precision: np.ndarray) -> float:
    """Mean of the defined (> -1) precision entries, NaN when there is none (pycocotools' -1)."""
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else float("nan")


def summarize_coco_eval(coco_eval: COCOeval, category_names: Mapping[Any, str]) -> dict[str, float]:
    """AP metrics from an accumulated COCOeval, computed the way ``COCOeval.summarize`` does.

    Unlike ``summarize`` this uses the last entry of ``params.maxDets`` for every metric (summarize
    hard-codes 100 for "AP"), so a custom detections-per-image limit is honoured, and it maps
    pycocotools' "-1: undefined" (no ground truth in that area range) to NaN.

    Args:
        coco_eval: after ``evaluate()`` and ``accumulate()``.
        category_names: dataset category id -> name, for the per-category ``AP-<name>`` entries.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<name>"...}``: fractions in [0, 1].
    """
    params = coco_eval.params
    # precision: [T IoU thresholds, R recall points, K categories, A area ranges, M maxDets]
    precision = coco_eval.eval["precision"]
    max_det_index = len(params.maxDets) - 1
    results: dict[str, float] = {}
    for name, (iou, area) in _AP_METRICS.items():
        p = precision[..., params.areaRngLbl.index(area), max_det_index]
        if iou is not None:
            p = p[np.isclose(params.iouThrs, iou)]
        results[name] = _mean_precision(p)
    all_area = params.areaRngLbl.index("all")
    for k, cat_id in enumerate(params.catIds):
        name = category_names.get(cat_id, str(cat_id))
        results[f"AP-{name}"] = _mean_precision(precision[:, :, k, all_area, max_det_index])
    return results


# ---------------------------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------------------------


@EVALUATOR_REGISTRY.register()
class COCOEvaluator(DatasetEvaluator):
    """COCO box (and mask) AP of a detector on a registered dataset, via pycocotools.

    Metrics are reported as FRACTIONS in [0, 1], exactly the numbers pycocotools computes
    (detectron2 multiplies them by 100; rcnnzoo does not). A metric with no ground truth to
    measure (e.g. ``APs`` on a dataset without small objects, pycocotools' -1) is NaN.

    Images scored are the ones passed through :meth:`process` (all of the dataset's images when
    the whole dataset was run), so evaluating a subset does not count the skipped images'
    objects as misses.

    Args:
        dataset_name: a name registered in ``DatasetCatalog`` / ``MetadataCatalog``. The metadata
            needs ``thing_classes``; ``thing_dataset_id_to_contiguous_id`` (to report the
            dataset's own category ids) and ``json_file`` (its COCO annotations) are used when set.
        tasks: any of ``"bbox"``, ``"segm"``.
        output_dir: where ``coco_instances_results.json`` (and, for datasets without a
            ``json_file``, the converted ``<dataset_name>_coco_format.json`` cache) are written.
        max_dets_per_image: pycocotools' limit on scored detections per image *and category*
            (the highest-scoring ones are kept), i.e. the last entry of COCOeval's
            ``params.maxDets`` (``[1, 10, max_dets_per_image]``). ``None`` follows the model:
            ``max(100, the most detections any evaluated image has)``, so no detection is
            dropped and a model returning up to 100 per image is scored exactly like
            pycocotools' defaults. Detections beyond an explicit limit are dropped with a warning.
        distributed: gather predictions from all processes and evaluate on the main one.
        use_cached_coco_format: reuse a converted-ground-truth cache found in ``output_dir``.
    """

    def __init__(
        self,
        dataset_name: str,
        tasks: Sequence[str] = ("bbox",),
        output_dir: str | None = None,
        max_dets_per_image: int | None = None,
        *,
        distributed: bool = True,
        use_cached_coco_format: bool = True,
    ):
        if isinstance(tasks, str):
            tasks = (tasks,)
        for task in tasks:
            if task not in SUPPORTED_TASKS:
                raise ValueError(
                    f"Unknown COCO task {task!r}.{did_you_mean(task, SUPPORTED_TASKS)} Supported: {SUPPORTED_TASKS}"
                )
        self._dataset_name = dataset_name
        self._tasks = tuple(tasks)
        self._output_dir = output_dir
        if max_dets_per_image is not None:
            _max_dets_list(int(max_dets_per_image))  # validates
        self._max_dets_per_image = None if max_dets_per_image is None else int(max_dets_per_image)
        self._distributed = distributed
        self._use_cached = use_cached_coco_format
        # Metadata and ground truth are read on the first evaluate(): building an evaluator (e.g.
        # from a config) must not load a dataset, and some datasets only get their class names then.
        self._coco_gt: COCO | None = None  # loaded on the first evaluate()
        self._predictions: list[dict] = []

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            record: dict[str, Any] = {"image_id": inp["image_id"], "instances": []}
            if "instances" in out:
                # Contiguous class ids for now; evaluate() maps them to the dataset's ids.
                instances = out["instances"].to("cpu")
                record["instances"] = instances_to_coco_json(instances, inp["image_id"])
            self._predictions.append(record)

    # -- evaluate ---------------------------------------------------------------------------

    def _gather_predictions(self) -> list[dict] | None:
        """All processes' per-image records on the main process (None elsewhere), one per image."""
        predictions = self._predictions
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather(predictions, dst=0)
            if not comm.is_main_process():
                return None
            predictions = list(itertools.chain(*gathered))
        # A sampler that pads the dataset to a multiple of the world size repeats images;
        # their detections would be scored twice.
        unique: dict[Any, dict] = {}
        for record in predictions:
            unique.setdefault(record["image_id"], record)
        return list(unique.values())

    def evaluate(self) -> dict[str, dict[str, float]]:
        predictions = self._gather_predictions()
        if predictions is None:
            return {}
        if not predictions:
            logger.warning("COCOEvaluator(%r) received no images; nothing to evaluate", self._dataset_name)
            return {}
        metadata = dataset_metadata(self._dataset_name)
        to_dataset_id = _dataset_id_lookup(metadata, len(metadata.thing_classes))
        coco_results = _map_category_ids(
            itertools.chain(*(r["instances"] for r in predictions)), to_dataset_id
        )
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            atomic_write_json(coco_results, path)
            logger.info("Saved %d detections to %s", len(coco_results), path)
        image_ids = [r["image_id"] for r in predictions]
        max_dets = _max_dets_list(self._detections_limit(predictions))
        category_names = {dataset_id: metadata.thing_classes[k] for k, dataset_id in to_dataset_id.items()}
        return self._eval_predictions(coco_results, image_ids, category_names, max_dets)

    def _detections_limit(self, predictions: list[dict]) -> int:
        """The detections scored per image and category: the one given, else what the model returned.

        Warns when the given limit drops detections (COCOeval keeps the highest-scoring ones).
        """
        if self._max_dets_per_image is None:
            return max([100, *(len(r["instances"]) for r in predictions)])
        limit = self._max_dets_per_image
        # COCOeval applies the limit to each (image, category) pair.
        counts: dict[tuple[Any, Any], int] = {}
        for r in predictions:
            for entry in r["instances"]:
                key = (r["image_id"], entry["category_id"])
                counts[key] = counts.get(key, 0) + 1
        cut_images = {image_id for (image_id, _), n in counts.items() if n > limit}
        if cut_images:
            logger.warning(
                "COCOEvaluator(%r): max_dets_per_image=%d cuts detections on %d of %d images "
                "(up to %d detections of one category in an image); only the %d highest-scoring per image "
                "and category are scored, which lowers AP. Leave max_dets_per_image=None to score them all.",
                self._dataset_name,
                limit,
                len(cut_images),
                len(predictions),
                max(counts.values()),
                limit,
            )
        return limit

    def _eval_predictions(
        self,
        coco_results: list[dict],
        image_ids: list[Any],
        category_names: dict[Any, str],
        max_dets: list[int],
    ) -> dict[str, dict[str, float]]:
        coco_gt = self._load_coco_gt()
        self._check_image_ids(coco_gt, image_ids)
        if not coco_results:
            logger.warning(
                "COCOEvaluator(%r): no detections on %d images; every AP is 0",
                self._dataset_name,
                len(image_ids),
            )
        # Names from the metadata win; the ground truth's own names cover categories it lacks.
        category_names = {**{c["id"]: c["name"] for c in coco_gt.dataset["categories"]}, **category_names}

        results: dict[str, dict[str, float]] = {}
        for task in self._tasks:
            if task == "segm" and not self._segm_ready(coco_gt, coco_results):
                continue
            coco_eval = self._run_cocoeval(coco_gt, coco_results, task, image_ids, max_dets)
            results[task] = summarize_coco_eval(coco_eval, category_names)
            logger.info(
                "Evaluation results for %s on %r:\n%s",
                task,
                self._dataset_name,
                _results_table(results[task]),
            )
        return results

    def _segm_ready(self, coco_gt: COCO, coco_results: list[dict]) -> bool:
        if coco_results and "segmentation" not in coco_results[0]:
            logger.warning("Task 'segm' requested but the predictions have no pred_masks; skipping it")
            return False
        if any("segmentation" not in a for a in coco_gt.dataset["annotations"]):
            logger.warning(
                "Task 'segm' requested but %r has annotations without segmentation; skipping it",
                self._dataset_name,
            )
            return False
        return True

    def _run_cocoeval(
        self, coco_gt: COCO, coco_results: list[dict], task: str, image_ids: list[Any], max_dets: list[int]
    ) -> COCOeval:
        """evaluate() + accumulate() of one task, with pycocotools' prints sent to the debug log.

        ``max_dets`` is COCOeval's ``params.maxDets``; its last entry limits the detections scored
        per image and category.
        """
        results = [dict(r) for r in coco_results]  # loadRes adds keys in place
        if task == "segm":
            # With a "bbox" present, loadRes takes detection areas from the boxes, which would
            # sort masks into small/medium/large by box area; mask AP should use mask area.
            for r in results:
                r.pop("bbox", None)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            coco_dt = coco_gt.loadRes(results) if results else _empty_results(coco_gt)
            coco_eval = COCOeval(coco_gt, coco_dt, task)
            coco_eval.params.maxDets = list(max_dets)
            coco_eval.params.imgIds = sorted(image_ids)
            coco_eval.evaluate()
            coco_eval.accumulate()
        logger.debug(buffer.getvalue())
        return coco_eval

    def _check_image_ids(self, coco_gt: COCO, image_ids: list[Any]) -> None:
        unknown = set(image_ids) - set(coco_gt.getImgIds())
        if unknown:
            sample = sorted(unknown, key=str)[:5]
            raise ValueError(
                f"{len(unknown)} evaluated image ids are not in the ground truth of {self._dataset_name!r} "
                f"(e.g. {sample}); inputs' image_id must be the dataset's image ids"
            )

    def _load_coco_gt(self) -> COCO:
        if self._coco_gt is not None:
            return self._coco_gt
        json_file = getattr(dataset_metadata(self._dataset_name), "json_file", None)
        if json_file:
            logger.info("Loading the COCO ground truth %s", os.fspath(json_file))
            with open(json_file) as f:
                dataset = json.load(f)
        else:
            dataset = self._converted_gt()
        self._coco_gt = _quiet_coco(dataset)
        return self._coco_gt

    def _converted_gt(self) -> dict:
        """The dataset as a COCO dict, through the json cache in output_dir when there is one."""
        cache = None
        if self._output_dir:
            cache = os.path.join(self._output_dir, f"{self._dataset_name}_coco_format.json")
            if self._use_cached and os.path.exists(cache):
                logger.info("Using the cached COCO-format ground truth %s", cache)
                with open(cache) as f:
                    return json.load(f)
        dataset = convert_to_coco_dict(self._dataset_name)
        if cache is not None:
            atomic_write_json(dataset, cache)
        return dataset


def _map_category_ids(entries: Iterable[dict], to_dataset_id: Mapping[int, int]) -> list[dict]:
    """Copies of COCO results entries with contiguous class ids replaced by dataset ids."""
    mapped = []
    for entry in entries:
        contiguous = entry["category_id"]
        if contiguous not in to_dataset_id:
            raise ValueError(
                f"A prediction has class {contiguous}, but the dataset has {len(to_dataset_id)} classes "
                f"(contiguous ids 0..{len(to_dataset_id) - 1})"
            )
        mapped.append({**entry, "category_id": to_dataset_id[contiguous]})
    return mapped


def _max_dets_list(max_dets: int) -> list[int]:
    """COCOeval's ``params.maxDets`` whose largest entry is ``max_dets``.

    COCOeval sorts the list and evaluates with its last entry, so the usual limits 1 and 10 are
    kept only when they are below ``max_dets`` (``[1, 10, 3]`` would evaluate with 10).
    """
    if max_dets < 1:
        raise ValueError(f"max_dets_per_image must be >= 1, got {max_dets}")
    return [d for d in (1, 10) if d < max_dets] + [max_dets]


def _empty_results(coco_gt: COCO) -> COCO:
    """A results COCO with no detections (``COCO.loadRes([])`` raises an IndexError)."""
    dataset = {
        "images": copy.copy(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    return _quiet_coco(dataset)


def _results_table(metrics: Mapping[str, float]) -> str:
    summary = {k: v for k, v in metrics.items() if not k.startswith("AP-")}
    per_class = {k[3:]: v for k, v in metrics.items() if k.startswith("AP-")}
    text = format_results_table(summary, columns=3)
    if per_class:
        text += "\nPer-category AP:\n" + format_results_table(
            per_class, columns=3, headers=("category", "AP")
        )
    if any(math.isnan(v) for v in summary.values()):
        text += "\n(nan: no ground truth in that area range)"
    return text
