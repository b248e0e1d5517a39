"""SelectiveSearch: boxes inside the image, its limits honoured, an obvious object found; ProposalNetwork."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from rcnnzoo.config import LazyCall as L
from rcnnzoo.config import LazyConfig, configs_root, instantiate
from rcnnzoo.modeling import RPN, GeneralizedRCNN, ProposalNetwork, SelectiveSearch
from rcnnzoo.structures import Boxes, ImageList, pairwise_iou

# (x0, y0, x1, y1) of a dark rectangle on a plain light background
_RECT = (40, 30, 110, 80)


def _picture(height: int = 120, width: int = 160, rect: tuple[int, ...] = _RECT) -> np.ndarray:
    """np.ndarray[H, W, 3] uint8 BGR: a plain background, a blue-ish rectangle and a small disc."""
    image = np.full((height, width, 3), 210, np.uint8)
    x0, y0, x1, y1 = rect
    image[y0:y1, x0:x1] = (150, 40, 30)
    cv2.circle(image, (width - 25, height - 25), 8, (20, 180, 20), -1)
    return image


def _inputs(image_bgr: np.ndarray, input_format: str = "BGR") -> list[dict]:
    image = image_bgr if input_format == "BGR" else image_bgr[:, :, ::-1]
    return [{"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))}]


def _propose(generator: SelectiveSearch, batched_inputs: list[dict]):
    images = ImageList.from_tensors([x["image"].float() for x in batched_inputs])
    proposals, losses = generator(images, {}, None, batched_inputs=batched_inputs)
    assert losses == {}
    return proposals


def _best_iou(boxes: Boxes, rect: tuple[float, ...]) -> float:
    return float(pairwise_iou(Boxes(torch.tensor([rect], dtype=torch.float32)), boxes).max())


def test_boxes_lie_inside_the_image_and_find_the_rectangle():
    generator = SelectiveSearch(max_proposals=(2000, 2000)).eval()
    (props,) = _propose(generator, _inputs(_picture()))
    boxes = props.proposal_boxes.tensor
    assert props.image_size == (120, 160)
    assert len(boxes) > 5
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert _best_iou(props.proposal_boxes, _RECT) >= 0.7  # recall at IoU 0.7 on the obvious object
    # scores keep selective search's ranking: strictly decreasing
    assert (props.objectness_logits[1:] < props.objectness_logits[:-1]).all()
    assert list(generator.parameters()) == []


def test_max_proposals_keeps_the_best_ranked_per_mode():
    inputs = _inputs(_picture())
    everything = _propose(SelectiveSearch().eval(), inputs)[0].proposal_boxes.tensor
    limited = SelectiveSearch(max_proposals=(7, 3))
    train = _propose(limited.train(), inputs)[0].proposal_boxes.tensor
    test = _propose(limited.eval(), inputs)[0].proposal_boxes.tensor
    assert len(everything) > 7
    # seeded ranking: the limited runs are the head of the full one
    torch.testing.assert_close(train, everything[:7])
    torch.testing.assert_close(test, everything[:3])


def test_min_size_drops_small_boxes():
    inputs = _inputs(_picture())
    everything = _propose(SelectiveSearch().eval(), inputs)[0].proposal_boxes.tensor
    kept = _propose(SelectiveSearch(min_size=20).eval(), inputs)[0].proposal_boxes.tensor
    small = ((everything[:, 2:] - everything[:, :2]) < 20).any(dim=1)
    assert small.any() and (~small).any()
    torch.testing.assert_close(kept, everything[~small])  # same boxes, same order, small ones out


def test_rgb_input_gives_the_same_proposals_as_bgr():
    image = _picture()
    bgr = _propose(SelectiveSearch(input_format="BGR").eval(), _inputs(image, "BGR"))[0]
    rgb = _propose(SelectiveSearch(input_format="RGB").eval(), _inputs(image, "RGB"))[0]
    torch.testing.assert_close(rgb.proposal_boxes.tensor, bgr.proposal_boxes.tensor)


def test_downscale_maps_boxes_back_to_the_input():
    rect = (80, 60, 220, 160)
    image = _picture(240, 320, rect)
    generator = SelectiveSearch(downscale=120).eval()
    (props,) = _propose(generator, _inputs(image))
    boxes = props.proposal_boxes.tensor
    assert props.image_size == (240, 320)
    assert (boxes >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 3] <= 240).all()
    assert boxes[:, 2].max() > 160  # in the input's frame, not the half-size one
    assert _best_iou(props.proposal_boxes, rect) >= 0.7


def test_opencv_thread_count_is_restored():
    before = cv2.getNumThreads()
    other = 1 if before != 1 else 2
    _propose(SelectiveSearch(num_threads=other).eval(), _inputs(_picture()))
    assert cv2.getNumThreads() == before


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="mode"):
        SelectiveSearch(mode="slow")
    with pytest.raises(ValueError, match="downscale"):
        SelectiveSearch(downscale=0)


def test_proposal_network_without_backbone_rescales_to_the_original_image():
    model = instantiate(L(ProposalNetwork)(backbone=None, proposal_generator=L(SelectiveSearch)()))
    assert list(model.parameters()) == []
    model.eval()
    inputs = _inputs(_picture())
    inputs[0].update(height=240, width=320)  # the image was resized by 1/2 for the model
    (out,) = model(inputs)
    props = out["proposals"]
    assert props.image_size == (240, 320)
    direct = _propose(SelectiveSearch().eval(), _inputs(_picture()))[0]
    torch.testing.assert_close(props.proposal_boxes.tensor, direct.proposal_boxes.tensor * 2)
    torch.testing.assert_close(props.objectness_logits, direct.objectness_logits)


class _FeatureReader(torch.nn.Module):
    """A generator that, like the RPN, declares no ``needs_features = False``."""

    def forward(self, images, features, gt_instances=None):
        raise AssertionError("not called")


def test_proposal_network_without_backbone_refuses_a_generator_that_needs_features():
    with pytest.raises(ValueError, match="needs_features"):
        ProposalNetwork(backbone=None, proposal_generator=_FeatureReader())
    assert getattr(RPN, "needs_features", True)


def test_detector_with_selective_search_gets_the_images_in_its_own_channel_order():
    cfg = LazyConfig.load(configs_root() / "Shapes/faster_rcnn_tiny_fpn.py")
    cfg.model.proposal_generator = L(SelectiveSearch)(max_proposals=(64, 64))
    cfg.model.input_format = "RGB"
    model = instantiate(cfg.model)
    assert isinstance(model, GeneralizedRCNN)
    assert model.proposal_generator.input_format == "RGB"  # filled in from the model
    model.eval()
    with torch.no_grad():
        (out,) = model(_inputs(_picture(), "RGB"))
    assert out["instances"].image_size == (120, 160)
