"""SPPPooler: SPPnet's window projection and floor/ceil bins, against an explicit-loop reference and
hand-computed cases; its flat output feeds the FC box heads inside the standard RoI heads."""

from __future__ import annotations

import math

import pytest
import torch

from rcnnzoo.config import LazyCall as L
from rcnnzoo.config import instantiate
from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling import (
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
    SPPPooler,
    StandardROIHeads,
    VGG16BoxHead,
)
from rcnnzoo.modeling.poolers import ROI_POOLER_REGISTRY, project_boxes_to_cells
from rcnnzoo.structures import Boxes, Instances


def reference_spp(x: torch.Tensor, boxes: list[torch.Tensor], levels, stride: int) -> torch.Tensor:
    """Slow SPP from the paper's formulas, in Python integers: one torch max per bin."""
    _, channels, height, width = x.shape
    rows = []
    for image, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in image_boxes.tolist():
            first = [math.floor(x0 / stride) + 1, math.floor(y0 / stride) + 1]
            last = [math.ceil(x1 / stride) - 1, math.ceil(y1 / stride) - 1]
            for d in range(2):
                if last[d] < first[d]:  # no cell centre inside: the cell nearest the box centre
                    first[d] = last[d] = math.floor(((x0, y0)[d] + (x1, y1)[d]) / 2 / stride + 0.5)
            hi = [width - 1, height - 1]
            first = [min(max(v, 0), hi[d]) for d, v in enumerate(first)]
            last = [min(max(v, 0), hi[d]) for d, v in enumerate(last)]
            w, h = last[0] - first[0] + 1, last[1] - first[1] + 1
            parts = []
            for n in levels:
                out = torch.empty(channels, n, n)
                for i in range(n):
                    ys = first[1] + (i * h) // n, first[1] + -((-(i + 1) * h) // n)
                    for j in range(n):
                        xs = first[0] + (j * w) // n, first[0] + -((-(j + 1) * w) // n)
                        out[:, i, j] = x[image, :, ys[0] : ys[1], xs[0] : xs[1]].amax(dim=(1, 2))
                parts.append(out.flatten())
            rows.append(torch.cat(parts))
    return torch.stack(rows) if rows else x.new_zeros((0, channels * sum(n * n for n in levels)))


def random_boxes(n: int, image_w: float, image_h: float, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([image_w, image_h])
    wh = torch.rand(n, 2, generator=generator) ** 2 * torch.tensor([image_w, image_h])  # many small boxes
    return torch.cat([xy, torch.minimum(xy + wh, torch.tensor([image_w, image_h]))], dim=1)


def test_hand_computed_window_and_bins():
    x = torch.arange(36.0).view(1, 1, 6, 6)  # value 6 * row + col
    pooler = SPPPooler(levels=(1, 2), scales=[1 / 16])
    out = pooler(
        [x], [Boxes(torch.tensor([[0.0, 0.0, 96.0, 96.0], [0.0, 0.0, 16.0, 16.0], [40.0, 20.0, 90.0, 50.0]]))]
    )
    # box 0: cells floor(0/16)+1 = 1 .. ceil(96/16)-1 = 5, 5 cells; 2 bins: cells 1..3 and 3..5 (they share 3)
    assert out[0].tolist() == [35, 21, 23, 33, 35]
    # box 1: last (0) < first (1), so the cell nearest the centre (8, 8) -> floor(0.5 + 0.5) = 1
    assert out[1].tolist() == [7] * 5
    # box 2: x cells 3..5, y cells 2..3; level 2: x bins 3..4 and 4..5, y bins 2 and 3
    assert out[2].tolist() == [23, 16, 17, 22, 23]


def test_window_projection_follows_the_paper():
    boxes = torch.tensor(
        [[0.0, 0.0, 64.0, 64.0], [17.0, 31.9, 47.0, 80.1], [0.0, 0.0, 10.0, 200.0], [200.0, 0.0, 300.0, 40.0]]
    )
    cells = project_boxes_to_cells(boxes, 1 / 16, height=10, width=15)
    assert cells.tolist() == [
        [1, 1, 3, 3],  # floor(0) + 1 .. ceil(4) - 1
        [2, 2, 2, 5],  # x: floor(1.06) + 1 .. ceil(2.94) - 1; y: floor(1.99) + 1 .. ceil(5.01) - 1
        [0, 1, 0, 9],  # x empty (1 .. 0): the centre cell floor(0.31 + 0.5); y: 1 .. 12 clipped to 9
        [13, 1, 14, 2],  # x: floor(12.5) + 1 .. 18 clipped to 14; y: 1 .. ceil(2.5) - 1
    ]


@pytest.mark.parametrize("levels", [(1, 2, 3, 6), (1, 2, 4), (7,)])
def test_matches_reference_on_random_features(levels):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 13, 17, generator=g)  # a 208 x 272 padded batch at stride 16
    boxes = [random_boxes(40, 272, 208, g), random_boxes(25, 250, 190, g)]
    boxes[0][0] = torch.tensor([0.0, 0.0, 272.0, 208.0])  # the whole map
    pooler = SPPPooler(levels=levels, scales=[1 / 16])
    out = pooler([x], [Boxes(b) for b in boxes])
    assert out.shape == (65, 3 * sum(n * n for n in levels))
    assert torch.equal(out, reference_spp(x, boxes, levels, 16))


def test_gradient_matches_reference():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 9, 11, generator=g, requires_grad=True)
    boxes = [random_boxes(20, 176, 144, g)]
    weights = torch.randn(20, 2 * 50, generator=g)
    (SPPPooler(scales=[1 / 16])([x], [Boxes(boxes[0])]) * weights).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    (reference_spp(x, boxes, (1, 2, 3, 6), 16) * weights).sum().backward()
    assert torch.allclose(ours, x.grad, atol=1e-5)  # same cells; only the summation order differs


def test_large_window_in_seven_bins_is_exact():
    # roi_pool's own 7x7 grid computes the last bin's end in float32 and overshoots by a cell
    # for a 57-cell window; the per-bin windows do not
    x = torch.zeros(1, 1, 1, 64)
    x[0, 0, 0, 58] = 1.0  # just right of the window (cells 1 .. 57)
    out = SPPPooler(levels=(7,), scales=[1.0])([x], [Boxes(torch.tensor([[0.0, 0.0, 58.0, 1.0]]))])
    assert out.max().item() == 0.0


def test_no_boxes_and_output_shape():
    pooler = SPPPooler(levels=(1, 2, 3, 6), scales=[1 / 16])
    assert pooler.output_shape(512) == ShapeSpec(channels=25600)
    out = pooler([torch.randn(2, 4, 5, 5)], [Boxes(torch.zeros(0, 4)), Boxes(torch.zeros(0, 4))])
    assert out.shape == (0, 200)


def test_bad_arguments():
    with pytest.raises(ValueError, match="one feature map"):
        SPPPooler(scales=[1 / 8, 1 / 16])
    with pytest.raises(ValueError, match="positive"):
        SPPPooler(levels=(0, 2), scales=[1 / 16])
    with pytest.raises(ValueError, match="one feature map"):
        SPPPooler(scales=[1 / 16])([torch.zeros(1, 1, 4, 4)] * 2, [Boxes(torch.zeros(0, 4))])


def test_registered_and_feeds_fc_box_heads_in_roi_heads():
    assert ROI_POOLER_REGISTRY.get("SPPPooler") is SPPPooler
    torch.manual_seed(0)
    for box_head in (L(FastRCNNConvFCHead)(fc_dims=[32, 32]), L(VGG16BoxHead)(dropout=0.0)):
        heads = instantiate(
            L(StandardROIHeads)(
                input_shape={"conv5": ShapeSpec(channels=8, stride=16)},
                in_features=["conv5"],
                num_classes=3,
                box_pooler=L("SPPPooler")(levels=(1, 2, 3, 6)),
                box_head=box_head,
                box_predictor=L(FastRCNNOutputLayers)(test_score_thresh=0.0),
            )
        )
        assert heads.box_pooler.scale == 1 / 16
        features = {"conv5": torch.randn(1, 8, 10, 12, requires_grad=True)}
        boxes = torch.tensor([[10.0, 20.0, 150.0, 140.0], [0.0, 0.0, 40.0, 40.0]])
        proposals = [Instances((160, 192), proposal_boxes=Boxes(boxes), objectness_logits=torch.zeros(2))]
        targets = [Instances((160, 192), gt_boxes=Boxes(boxes[:1]), gt_classes=torch.tensor([1]))]
        heads.train()
        _, losses = heads(None, features, proposals, targets)
        sum(losses.values()).backward()
        assert features["conv5"].grad.abs().sum() > 0
        heads.eval()
        with torch.no_grad():
            (detections,), _ = heads(None, features, proposals, None)
        assert detections.has("pred_boxes") and detections.has("scores")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, 38, 50, generator=g)
    boxes = [random_boxes(300, 800, 600, g), random_boxes(200, 700, 500, g)]
    pooler = SPPPooler(scales=[1 / 16])
    cpu = pooler([x], [Boxes(b) for b in boxes])
    cuda = pooler([x.cuda()], [Boxes(b.cuda()) for b in boxes])
    assert torch.equal(cuda.cpu(), cpu)
