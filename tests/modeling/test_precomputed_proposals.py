"""PrecomputedProposals: the inputs' proposals, best k; a Fast R-CNN on them trains without an RPN."""

from __future__ import annotations

import pytest
import torch

from rcnnzoo.config import LazyCall as L
from rcnnzoo.config import LazyConfig, configs_root, instantiate
from rcnnzoo.modeling import GeneralizedRCNN, PrecomputedProposals
from rcnnzoo.solver import get_default_optimizer_params
from rcnnzoo.structures import Boxes, ImageList, Instances


def _proposals(size: tuple[int, int], boxes: list[list[float]], logits: list[float]) -> Instances:
    return Instances(
        size,
        proposal_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
        objectness_logits=torch.tensor(logits, dtype=torch.float32),
    )


def _images(*sizes: tuple[int, int]) -> ImageList:
    return ImageList.from_tensors([torch.zeros(3, h, w) for h, w in sizes])


def test_keeps_the_top_k_by_score_for_train_and_test():
    boxes = [[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4], [10, 10, 30, 30]]
    inputs = [{"proposals": _proposals((40, 50), boxes, [0.1, 3.0, -2.0, 1.5])}]
    generator = PrecomputedProposals(topk=(3, 2))
    assert list(generator.parameters()) == []

    (train,), losses = generator.train()(_images((40, 50)), {}, None, batched_inputs=inputs)
    assert losses == {}
    torch.testing.assert_close(train.objectness_logits, torch.tensor([3.0, 1.5, 0.1]))
    torch.testing.assert_close(
        train.proposal_boxes.tensor, torch.tensor([boxes[1], boxes[3], boxes[0]]).float()
    )

    (test,), _ = generator.eval()(_images((40, 50)), {}, None, batched_inputs=inputs)
    torch.testing.assert_close(test.proposal_boxes.tensor, torch.tensor([boxes[1], boxes[3]]).float())


def test_an_input_without_proposals_says_how_to_attach_them():
    generator = PrecomputedProposals()
    with pytest.raises(KeyError, match="proposal_files"):
        generator(_images((8, 8)), {}, None, batched_inputs=[{"file_name": "a.png"}])


def test_proposals_of_another_image_size_are_refused():
    inputs = [{"proposals": _proposals((40, 50), [[0, 0, 4, 4]], [0.0]), "file_name": "a.png"}]
    with pytest.raises(ValueError, match="resized image"):
        PrecomputedProposals()(_images((80, 100)), {}, None, batched_inputs=inputs)


def _batch(generator: torch.Generator) -> list[dict]:
    """Two images with ground truth and proposals around it (jittered copies and random boxes)."""
    batch = []
    for h, w in ((96, 128), (112, 96)):
        gt = torch.tensor([[10.0, 12.0, 50.0, 60.0], [40.0, 30.0, 90.0, 80.0]])
        gt[:, 0::2] = gt[:, 0::2].clamp(max=w)
        gt[:, 1::2] = gt[:, 1::2].clamp(max=h)
        jittered = gt.repeat(8, 1) + torch.randn(16, 4, generator=generator) * 4
        xy = torch.rand(24, 2, generator=generator) * torch.tensor([w - 20.0, h - 20.0])
        random_boxes = torch.cat([xy, xy + 8 + torch.rand(24, 2, generator=generator) * 30], dim=1)
        boxes = Boxes(torch.cat([jittered, random_boxes]))
        boxes.clip((h, w))
        proposals = Instances(
            (h, w), proposal_boxes=boxes, objectness_logits=torch.randn(40, generator=generator)
        )
        batch.append(
            {
                "image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator),
                "instances": Instances((h, w), gt_boxes=Boxes(gt), gt_classes=torch.tensor([0, 2])),
                "proposals": proposals[proposals.proposal_boxes.nonempty()],
            }
        )
    return batch


def test_fast_rcnn_on_precomputed_proposals_trains_and_infers():
    torch.manual_seed(0)
    cfg = LazyConfig.load(configs_root() / "Shapes/faster_rcnn_tiny_fpn.py")
    cfg.model.proposal_generator = L(PrecomputedProposals)(topk=(32, 16))
    model = instantiate(cfg.model)
    assert isinstance(model, GeneralizedRCNN) and isinstance(model.proposal_generator, PrecomputedProposals)
    batch = _batch(torch.Generator().manual_seed(0))

    # the optimizer gets every parameter there is: backbone and RoI heads
    groups = get_default_optimizer_params(model)
    optimized = {id(p) for g in groups for p in g["params"]}
    assert optimized == {id(p) for p in model.parameters()} and optimized
    optimizer = torch.optim.SGD(groups, lr=0.01, momentum=0.9)
    head_weight = model.roi_heads.box_predictor.cls_score.weight
    before = head_weight.detach().clone()

    model.train()
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"}  # no RPN losses
    assert all(torch.isfinite(v) for v in losses.values())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    assert model.backbone.bottom_up.stem[0][0].weight.grad.abs().sum() > 0  # reaches the backbone
    optimizer.step()
    assert not torch.equal(head_weight.detach(), before)

    model.eval()
    with torch.no_grad():
        outputs = model([{k: v for k, v in x.items() if k != "instances"} for x in batch])
    assert [o["instances"].image_size for o in outputs] == [(96, 128), (112, 96)]
