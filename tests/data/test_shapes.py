import filecmp
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util

from rcnnzoo.data import SHAPES_CLASSES, DatasetCatalog, MetadataCatalog, generate_shapes, register_shapes
from rcnnzoo.data.datasets import shapes as shapes_module
from rcnnzoo.data.mapper import read_image


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = generate_shapes(tmp_path / "a", 6, seed=5, show_progress=False)
    b = generate_shapes(tmp_path / "b", 6, seed=5, show_progress=False)
    c = generate_shapes(tmp_path / "c", 6, seed=6, show_progress=False)
    names = _files(tmp_path / "a")
    assert names == _files(tmp_path / "b") and len(names) == 7  # 6 PNGs + json
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert not mismatch and not errors
    assert open(a, "rb").read() == open(b, "rb").read()
    assert open(a, "rb").read() != open(c, "rb").read()


def test_annotations_contract(small_shapes):
    json_file, image_root = small_shapes
    coco = json.load(open(json_file))
    assert [c["name"] for c in coco["categories"]] == list(SHAPES_CLASSES)
    per_image = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        per_image[ann["image_id"]].append(ann)
    assert all(1 <= len(anns) <= 8 for anns in per_image.values())
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3}  # every class appears

    sizes = set()
    overlapping_boxes = 0
    for img in coco["images"]:
        h, w = img["height"], img["width"]
        assert 192 <= h <= 320 and 192 <= w <= 320
        sizes.add((h, w))
        assert read_image(os.path.join(image_root, img["file_name"])).shape == (h, w, 3)
        owner = np.zeros((h, w), np.int32)
        boxes = []
        for ann in per_image[img["id"]]:
            assert isinstance(ann["segmentation"]["counts"], str)
            rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
            mask = mask_util.decode(rle).astype(bool)
            assert mask.shape == (h, w)
            ys, xs = np.nonzero(mask)
            # bbox (XYWH) is exactly the box of the mask; area is the mask's
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == mask.sum()
            assert min(ann["bbox"][2:]) >= 5
            owner += mask  # masks are visible parts: no pixel belongs to two objects
            boxes.append(ann["bbox"])
        assert owner.max() <= 1
        for i, (x0, y0, bw, bh) in enumerate(boxes):
            for x1, y1, bw1, bh1 in boxes[i + 1 :]:
                overlapping_boxes += x0 < x1 + bw1 and x1 < x0 + bw and y0 < y1 + bh1 and y1 < y0 + bh
    assert len(sizes) > 10  # sizes vary
    assert overlapping_boxes >= 3  # objects overlap, and their masks are still disjoint: occlusion


def test_occlusion_happens_and_hidden_objects_are_dropped():
    params = shapes_module.ShapesParams()
    fractions = []
    for i in range(20):
        _, objects = shapes_module._render_image(np.random.default_rng([0, i]), params)
        fractions += [o.visible.sum() / o.full.sum() for o in objects]
    fractions = np.array(fractions)
    assert (fractions < 0.95).sum() >= 5  # some objects are partly hidden
    assert fractions.min() >= params.min_visible_frac


def test_objects_are_visible_against_the_background(small_shapes):
    """The pixels inside each mask differ from a ring just outside it (the object is drawn)."""
    json_file, image_root = small_shapes
    coco = json.load(open(json_file))
    images = {img["id"]: img for img in coco["images"]}
    diffs = []
    for ann in coco["annotations"]:
        img = read_image(os.path.join(image_root, images[ann["image_id"]]["file_name"])).astype(np.float32)
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        mask = mask_util.decode(rle).astype(bool)
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~mask
        diffs.append(np.linalg.norm(img[mask].mean(0) - img[ring].mean(0)))
    assert np.median(diffs) > 30


def test_register_shapes_generates_once_then_reuses(datasets_root, catalog_names, monkeypatch):
    catalog_names.append("tmp_shapes")
    register_shapes("tmp_shapes", "val", num_images=4, seed=9)
    assert not (datasets_root / "shapes").exists(), "registration must not touch the disk"
    dicts = DatasetCatalog.get("tmp_shapes")
    assert len(dicts) == 4
    assert all(0 <= a["category_id"] < 3 for d in dicts for a in d["annotations"])
    assert all(d["file_name"].startswith(str(datasets_root / "shapes")) for d in dicts)
    meta = MetadataCatalog.get("tmp_shapes")
    assert meta.thing_classes == list(SHAPES_CLASSES) and meta.evaluator_type == "coco"
    assert os.path.isfile(meta.json_file)
    (folder,) = os.listdir(datasets_root / "shapes")  # no temporary folder left behind
    assert not folder.startswith(".")

    def fail(*args, **kwargs):
        raise AssertionError("should reuse the generated copy")

    monkeypatch.setattr(shapes_module, "generate_shapes", fail)
    assert DatasetCatalog.get("tmp_shapes") == dicts


def test_lost_race_uses_the_winners_copy(tmp_path, monkeypatch):
    """Another process renames its copy into place while we generate: ours is discarded."""
    real_generate = shapes_module.generate_shapes
    final = tmp_path / shapes_module.shapes_dirname("train", 2, 0)

    def racing_generate(out_dir, *args, **kwargs):
        real_generate(final, *args, **kwargs)  # the "other process" finishes first
        (final / "winner").write_text("")
        return real_generate(out_dir, *args, **kwargs)

    monkeypatch.setattr(shapes_module, "generate_shapes", racing_generate)
    json_file, image_root = shapes_module.prepare_shapes("train", 2, 0, root=tmp_path)
    assert (final / "winner").exists() and json_file == str(final / "instances_train.json")
    assert sorted(os.listdir(final.parent)) == [final.name]  # our temporary folder is gone


def test_params_change_the_folder():
    default = shapes_module.shapes_dirname("train", 1000, 0)
    assert default != shapes_module.shapes_dirname("train", 1000, 1)
    assert default != shapes_module.shapes_dirname("train", 999, 0)
    assert default != shapes_module.shapes_dirname(
        "train", 1000, 0, shapes_module.ShapesParams(max_objects=4)
    )
    assert default == shapes_module.shapes_dirname("train", 1000, 0)


def test_zero_images_is_valid(tmp_path):
    json_file = generate_shapes(tmp_path, 0, seed=0, show_progress=False)
    assert json.load(open(json_file))["images"] == []
