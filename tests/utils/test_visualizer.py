"""The visualizer draws what it is given, where it is given, in the class's colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rcnnzoo.structures import Boxes, BoxMode, Instances
from rcnnzoo.utils.visualizer import PALETTE, class_color, draw_dataset_dict, draw_instances, save_image


def blank(h=250, w=250, value=0):
    return np.full((h, w, 3), value, dtype=np.uint8)


def detections(boxes, classes, scores=None, masks=None, size=(250, 250)):
    inst = Instances(size, pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)))
    inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
    if scores is not None:
        inst.scores = torch.tensor(scores, dtype=torch.float32)
    if masks is not None:
        inst.pred_masks = masks
    return inst


def changed(a, b):
    return (a != b).any(axis=2)


def test_box_outline_in_class_colour_and_nothing_outside():
    image = blank()
    out = draw_instances(image, detections([[60, 100, 180, 200]], [2], [0.93]), ["a", "b", "c"])
    color = np.array(class_color(2))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 0).all()  # the input is not modified
    # Outline pixels on all four edges, well away from the label tag in the top-left corner.
    for y, x in [(150, 60), (150, 180), (200, 120), (100, 170)]:
        assert (out[y, x] == color).all(), (y, x)
    # The inside of the box stays untouched (no mask given) ...
    assert not changed(out, image)[110:190, 70:170].any()
    # ... and so does everything outside the box, except the label tag just above its top-left.
    diff = changed(out, image)
    diff[100 - 30 : 100, 60 : 60 + 120] = False  # tag area
    diff[100:202, 60:182] = False  # box area
    assert not diff.any()


def test_label_tag_is_filled_and_readable_on_small_images():
    out = draw_instances(blank(), detections([[60, 100, 180, 200]], [0], [0.93]), ["person"])
    ys, xs = np.nonzero(changed(out, blank())[:100])  # the tag sits just above the box
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    assert bottom == 99 and left == 60
    assert bottom - top + 1 >= 10 and right - left + 1 >= 45  # big enough to read at 250 px
    tag = out[top : bottom + 1, left : right + 1]
    # Filled with the class colour, text in a contrasting colour (white on this red).
    assert (tag == np.array(class_color(0))).all(axis=2).mean() > 0.5
    assert (tag > 180).all(axis=2).sum() > 30  # anti-aliased white glyph pixels


def test_tag_moves_inside_when_the_box_touches_the_top():
    out = draw_instances(blank(), detections([[10, 0, 120, 80]], [1], [0.5]), ["dog"])
    color = np.array(class_color(1))
    assert ((out[2:12, 15:40] == color).all(axis=2)).mean() > 0.3


def test_score_threshold_and_gt_fields():
    inst = detections([[10, 10, 50, 50], [100, 100, 200, 200]], [0, 1], [0.2, 0.9])
    out = draw_instances(blank(), inst, ["a", "b"], score_threshold=0.5)
    assert not changed(out, blank())[10:51, 10:51].any()
    assert (out[150, 100] == class_color(1)).all()

    gt = Instances(
        (250, 250), gt_boxes=Boxes(torch.tensor([[30.0, 40.0, 90.0, 120.0]])), gt_classes=torch.tensor([3])
    )
    out = draw_instances(blank(), gt, None)
    assert (out[80, 30] == class_color(3)).all()


def test_masks_are_filled_semi_transparent_with_an_outline():
    mask = torch.zeros(1, 250, 250, dtype=torch.bool)
    mask[0, 120:200, 80:160] = True
    out = draw_instances(blank(value=100), detections([[70, 110, 170, 210]], [4], [0.8], masks=mask), None)
    color = np.array(class_color(4), dtype=np.float32)
    inside = out[160, 120].astype(np.float32)
    # A blend of the background (100) and the class colour, neither one nor the other.
    expected = 100 * (1 - 0.45) + color * 0.45
    assert np.abs(inside - expected).max() <= 1
    assert (out[160, 80] == color).all()  # mask outline
    assert (out[115, 120] == 100).all()  # inside the box, outside the mask


# pycocotools.mask.decode trips a numpy 2 DeprecationWarning inside pycocotools itself.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_draw_dataset_dict_with_polygon_and_xywh_box():
    record = {
        "height": 250,
        "width": 250,
        "annotations": [
            {
                "bbox": [50, 60, 100, 80],  # XYWH
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": 5,
                "segmentation": [[50, 60, 150, 60, 150, 140, 50, 140]],
            }
        ],
    }
    out = draw_dataset_dict(blank(), record, [f"c{i}" for i in range(6)])
    color = np.array(class_color(5))
    assert (out[100, 150] == color).all()  # right edge of x0 + w = 150
    assert (out[100, 100] != 0).all() and not (out[100, 100] == color).all()  # blended mask interior


def test_save_image_writes_a_valid_png(tmp_path):
    drawn = draw_instances(blank(), detections([[20, 30, 120, 140]], [0], [0.7]), ["x"])
    path = tmp_path / "sub" / "vis.png"
    save_image(drawn, path)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert np.array_equal(np.asarray(img.convert("RGB")), drawn)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["vis.png"]


def test_rejects_non_image_input_and_cycles_palette():
    with pytest.raises(ValueError, match="uint8"):
        draw_instances(np.zeros((10, 10, 3), dtype=np.float32), detections([[0, 0, 5, 5]], [0]))
    assert class_color(len(PALETTE) + 2) == class_color(2)
