"""tools/precompute_proposals.py on a tiny COCO dataset: selective search in 2 worker processes,
an RPN in this process; the file attaches to the dataset. And the selective search config evaluates
with train_net --eval-only although its model has no parameters."""

from __future__ import annotations

import json
import logging
import uuid

import cv2
import numpy as np
import pytest
import torch

from rcnnzoo.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    ResizeShortestEdge,
    get_detection_dataset_dicts,
    load_proposals,
    register_coco_instances,
)
from rcnnzoo.evaluation import ProposalEvaluator
from rcnnzoo.modeling import PrecomputedProposals, ProposalNetwork
from rcnnzoo.structures import Boxes, pairwise_iou
from rcnnzoo.tools import precompute_proposals, train_net

# per image: (height, width) and the one rectangle drawn on it, XYXY
_IMAGES = {
    11: ((96, 120), (20, 16, 70, 60)),
    12: ((80, 100), (50, 10, 90, 70)),
    13: ((90, 90), (10, 30, 60, 80)),
}


@pytest.fixture(autouse=True)
def restore_loggers():
    """The tools configure the 'rcnnzoo' logger (propagate=False); undo it for other tests' log capture."""
    log = logging.getLogger("rcnnzoo")
    handlers, propagate = list(log.handlers), log.propagate
    yield
    for h in log.handlers:
        if h not in handlers:
            log.removeHandler(h)
            h.close()
    log.propagate = propagate


@pytest.fixture
def tiny_coco(tmp_path) -> str:
    """A registered 3-image COCO dataset: a dark rectangle on a plain background per image."""
    root = tmp_path / "images"
    root.mkdir()
    images, annotations = [], []
    for image_id, ((h, w), (x0, y0, x1, y1)) in _IMAGES.items():
        picture = np.full((h, w, 3), 215, np.uint8)
        picture[y0:y1, x0:x1] = (40, 60, 170)
        cv2.imwrite(str(root / f"{image_id}.png"), picture)
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": h, "width": w})
        annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "category_id": 1,
                "iscrowd": 0,
                "area": (x1 - x0) * (y1 - y0),
            }
        )
    json_file = tmp_path / "instances.json"
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "box"}]}
    json_file.write_text(json.dumps(coco))
    name = f"tiny_coco_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, json_file, root)
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_selective_search_in_two_workers(tmp_path, tiny_coco):
    output = tmp_path / "out" / "ss.npz"
    result = precompute_proposals.main(
        [
            "--config-file=Classic/selective_search_shapes.py",
            f"--dataset={tiny_coco}",
            f"--output={output}",
            "--num-workers=2",
        ]
    )
    assert result["output"] == str(output) and result["num_images"] == 3
    assert result["in_workers"]  # no parameters: selective search ran in the loader processes
    proposals = load_proposals(output)
    assert sorted(proposals.ids.tolist()) == sorted(_IMAGES)
    for k, image_id in enumerate(proposals.ids.tolist()):
        (h, w), rect = _IMAGES[image_id]
        boxes, scores = proposals.proposals_of(k)
        assert len(boxes) > 0 and (np.diff(scores) < 0).all()  # selective search's order
        # in the ORIGINAL image's frame (the model saw it resized to a 256 px short side)
        assert (boxes >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        iou = pairwise_iou(Boxes(torch.tensor([rect], dtype=torch.float32)), Boxes(torch.from_numpy(boxes)))
        assert float(iou.max()) >= 0.7, image_id

    # the file attaches to its dataset and the mapper resizes the proposals with the image
    dicts = get_detection_dataset_dicts(tiny_coco, proposal_files=[str(output)])
    mapper = DatasetMapper(is_train=True, augmentations=[ResizeShortestEdge(160)], proposal_topk=5)
    mapped = mapper(dicts[0])
    assert len(mapped["proposals"]) == 5
    assert mapped["proposals"].image_size == tuple(mapped["image"].shape[1:])

    # and its recall can be scored: a proposal network that only reads the file
    model = ProposalNetwork(backbone=None, proposal_generator=PrecomputedProposals()).eval()
    mapper = DatasetMapper(is_train=False, augmentations=[ResizeShortestEdge(160)])
    evaluator = ProposalEvaluator(tiny_coco)
    evaluator.reset()
    for d in dicts:
        inputs = [mapper(d)]
        evaluator.process(inputs, model(inputs))
    assert evaluator.evaluate()["box_proposals"]["R@0.7@1000"] == 1.0


def test_rpn_runs_here_with_workers_reading(tmp_path, tiny_coco):
    output = tmp_path / "rpn.npz"
    result = precompute_proposals.main(
        [
            "--config-file",
            "Shapes/faster_rcnn_tiny_fpn.py",
            "--dataset",
            tiny_coco,
            "--output",
            str(output),
            "--weights",
            "",  # a random RPN: the plumbing, not the quality
            "--num-workers",
            "2",
            "model.proposal_generator.post_nms_topk=(300,50)",
        ]
    )
    proposals = load_proposals(output)
    assert result["mean_proposals"] == pytest.approx(len(proposals.boxes) / 3)
    assert not result["in_workers"]  # a network runs in this process
    for k, image_id in enumerate(proposals.ids.tolist()):
        (h, w), _ = _IMAGES[image_id]
        boxes, scores = proposals.proposals_of(k)
        assert 0 < len(boxes) <= 50  # the test-time post-NMS top-k
        assert (boxes[:, 2] <= w + 1e-3).all() and (boxes[:, 3] <= h + 1e-3).all()
        assert (np.diff(scores) <= 0).all()


def test_a_generator_that_reads_files_is_refused(tmp_path, tiny_coco):
    with pytest.raises(SystemExit, match="nothing to compute"):
        precompute_proposals.main(
            [
                "--config-file=Shapes/faster_rcnn_tiny_fpn.py",
                f"--dataset={tiny_coco}",
                f"--output={tmp_path / 'x.npz'}",
                "model.proposal_generator={'_target_': 'PrecomputedProposals'}",
            ]
        )


def test_selective_search_config_evaluates_with_train_net_eval_only(tiny_coco):
    results = train_net.main(
        [
            "--config-file=Classic/selective_search_shapes.py",
            "--eval-only",
            f"dataloader.test.dataset.names={tiny_coco}",
            f"dataloader.evaluator.dataset_name={tiny_coco}",
            "dataloader.test.num_workers=0",
        ]
    )
    metrics = results["box_proposals"]
    assert metrics["R@0.5@1000"] == 1.0 and metrics["AR@100"] > 0.5
