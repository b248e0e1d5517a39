"""COCO-format instance annotations -> dataset dicts.

The json is read with the standard library (no pycocotools, which prints while loading).
Category ids in the file may be any integers; they are mapped to contiguous labels
0..K-1 in increasing id order, and the mapping is recorded in the metadata so an evaluator can
map predictions back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from rcnnzoo.structures import BoxMode

from ..catalog import DatasetCatalog, MetadataCatalog

__all__ = ["load_coco_json", "register_coco_instances"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


def _read_json(json_file: PathLike) -> dict:
    path = os.fspath(json_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file not found: {os.path.abspath(path)}")
    with open(path) as f:
        return json.load(f)


def _category_mapping(categories: list[dict], json_file: str) -> tuple[dict[int, int], list[str]]:
    """Map the file's category ids to 0..K-1 in increasing id order; return (mapping, class names)."""
    if not categories:
        raise ValueError(f"{json_file} has no 'categories'")
    cats = sorted(categories, key=lambda c: c["id"])
    ids = [int(c["id"]) for c in cats]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{json_file} has duplicate category ids: {ids}")
    return {cid: i for i, cid in enumerate(ids)}, [c["name"] for c in cats]


def _valid_segmentation(seg: Any) -> Any:
    """Polygons lose the degenerate ones (fewer than 3 points), which rasterizers reject; RLE is kept as is."""
    if isinstance(seg, list):
        return [p for p in seg if len(p) % 2 == 0 and len(p) >= 6]
    return seg


def _convert_annotation(ann: dict, id_map: dict[int, int], json_file: str) -> dict:
    cid = ann.get("category_id")
    # An id that is not among the file's categories is kept as label -1 with the raw id, so that
    # the dataset checks can list every such annotation at once; get_detection_dataset_dicts
    # refuses them before training.
    label = id_map.get(cid, -1)
    bbox = ann.get("bbox")
    if bbox is None or len(bbox) != 4:
        raise ValueError(f"Annotation id={ann.get('id')} in {json_file} has no valid 'bbox' (x, y, w, h): {bbox}")
    out = {
        "bbox": [float(v) for v in bbox],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": label,
        "iscrowd": int(ann.get("iscrowd", 0)),
        "id": ann.get("id"),
    }
    if label < 0:
        out["dataset_category_id"] = cid
    if "segmentation" in ann:
        out["segmentation"] = _valid_segmentation(ann["segmentation"])
    return out


def load_coco_json(json_file: PathLike, image_root: PathLike, dataset_name: str | None = None) -> list[dict]:
    """Read a COCO instances json into dataset dicts.

    Args:
        json_file: path of the COCO json (``images``, ``annotations``, ``categories``).
        image_root: folder the images' ``file_name`` are relative to.
        dataset_name: if given, set ``thing_classes`` and ``thing_dataset_id_to_contiguous_id``
            in its :class:`Metadata`.

    Returns:
        one dict per image, in the json's image order: ``file_name`` (joined with ``image_root``),
        ``height``, ``width``, ``image_id`` and ``annotations``: list of dicts with ``bbox``
        (XYWH as in the file), ``bbox_mode`` (``BoxMode.XYWH_ABS``), ``category_id`` (0..K-1),
        ``iscrowd``, ``id`` and ``segmentation`` (polygons or RLE as in the file) when present.

    Raises:
        FileNotFoundError: naming the path, if ``json_file`` does not exist.
    """
    start = time.perf_counter()
    json_file = os.fspath(json_file)
    image_root = os.fspath(image_root)
    data = _read_json(json_file)
    id_map, class_names = _category_mapping(data.get("categories", []), json_file)
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(thing_classes=class_names, thing_dataset_id_to_contiguous_id=id_map)

    anns_per_image: dict[Any, list[dict]] = {}
    for ann in data.get("annotations", []):
        if ann.get("ignore", 0):  # some converters mark unusable boxes this way
            continue
        anns_per_image.setdefault(ann["image_id"], []).append(_convert_annotation(ann, id_map, json_file))

    dicts = []
    for img in data.get("images", []):
        dicts.append(
            {
                "file_name": os.path.join(image_root, img["file_name"]),
                "height": int(img["height"]),
                "width": int(img["width"]),
                "image_id": img["id"],
                "annotations": anns_per_image.get(img["id"], []),
            }
        )
    unknown = set(anns_per_image) - {d["image_id"] for d in dicts}
    if unknown:
        raise ValueError(f"{json_file} has annotations for image ids not in 'images': {sorted(unknown)[:10]}")
    logger.info(
        "Loaded %d images, %d annotations from %s in %.2fs",
        len(dicts),
        sum(len(v) for v in anns_per_image.values()),
        json_file,
        time.perf_counter() - start,
    )
    return dicts


def register_coco_instances(name: str, metadata: dict, json_file: PathLike, image_root: PathLike) -> None:
    """Register a COCO-format dataset under ``name``; the json is read on first ``DatasetCatalog.get``.

    Args:
        metadata: extra metadata (may be empty); ``thing_classes`` is filled from the json on load.
        json_file, image_root: as in :func:`load_coco_json`; also set in the metadata together with
            ``evaluator_type="coco"``.

    Registering the same name again with the same files does nothing (config files that register
    their data may be loaded several times); with other files it raises ``ValueError``.
    """
    if name in DatasetCatalog:
        # A config file that registers its dataset may be loaded more than once in a process;
        # the same registration again is harmless, a different one under the same name is not.
        meta = MetadataCatalog.get(name)
        same = str(meta.get("json_file")) == str(json_file) and str(meta.get("image_root")) == str(image_root)
        if same:
            return
        raise ValueError(
            f"Dataset {name!r} is already registered with json_file={meta.get('json_file')!r}, "
            f"image_root={meta.get('image_root')!r}; pick another name or DatasetCatalog.remove({name!r}) first"
        )
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata)
