import torch

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling.box_regression import Box2BoxTransform
from rcnnzoo.modeling.matcher import Matcher
from rcnnzoo.modeling.roi_heads import (
    FastRCNNOutputLayers,
    fast_rcnn_inference,
    fast_rcnn_losses,
    sample_rois,
)
from rcnnzoo.structures import Boxes, Instances


def test_sample_rois_labels_hand_computed():
    torch.manual_seed(0)
    gt = Instances((100, 100), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]])), gt_classes=torch.tensor([2]))
    props = Instances(
        (100, 100),
        proposal_boxes=Boxes(torch.tensor([[0.0, 0.0, 10.0, 9.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 10.0]])),
        objectness_logits=torch.zeros(3),
    )
    s = sample_rois(props, gt, Matcher([0.5], [0, 1]), num_classes=3, batch_size_per_image=10, positive_fraction=0.5)
    by_box = {tuple(b.tolist()): int(c) for b, c in zip(s.proposal_boxes.tensor, s.gt_classes)}
    assert by_box == {(0.0, 0.0, 10.0, 9.0): 2, (50.0, 50.0, 60.0, 60.0): 3, (0.0, 0.0, 10.0, 10.0): 2}
    bg = s.gt_classes == 3
    assert torch.equal(s.gt_boxes.tensor[bg], s.proposal_boxes.tensor[bg])


def test_losses_without_foreground_have_zero_box_loss():
    scores = torch.randn(4, 3, requires_grad=True)
    deltas = torch.randn(4, 8, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4)
    out = fast_rcnn_losses(scores, deltas, torch.full((4,), 2), boxes, boxes, Box2BoxTransform((10, 10, 5, 5)))
    assert out["loss_box_reg"].item() == 0.0
    assert torch.isclose(out["loss_cls"], torch.nn.functional.cross_entropy(scores, torch.full((4,), 2)))
    (out["loss_cls"] + out["loss_box_reg"]).backward()


def test_box_loss_uses_the_gt_class_deltas():
    t = Box2BoxTransform((10, 10, 5, 5))
    prop = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[1.0, 0.0, 11.0, 10.0]])
    target = t.get_deltas(prop, gt)
    deltas = torch.zeros(1, 8)
    deltas[0, 4:] = target[0]  # class 1 predicts the exact target; class 0 predicts zero
    out = fast_rcnn_losses(torch.zeros(1, 3), deltas, torch.tensor([1]), prop, gt, t)
    assert out["loss_box_reg"].item() == 0.0
    out = fast_rcnn_losses(torch.zeros(1, 3), deltas, torch.tensor([0]), prop, gt, t)
    assert torch.isclose(out["loss_box_reg"], target.abs().sum())


def test_inference_is_class_aware_and_thresholded():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0] * 2, [0.5, 0.0, 10.5, 10.0] * 2, [50.0, 50.0, 60.0, 60.0] * 2])
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.15, 0.05], [0.01, 0.02, 0.97]])  # K=2, bg last
    (res,) = fast_rcnn_inference([boxes], [probs], [(100, 100)], score_thresh=0.1, nms_thresh=0.5, topk_per_image=10)
    got = sorted(zip(res.pred_classes.tolist(), [round(s, 2) for s in res.scores.tolist()]))
    # box 1 class 0 is suppressed by box 0 class 0; box 1 class 1 (0.15) survives: NMS is per class
    assert got == [(0, 0.9), (1, 0.15)]


def test_predictor_shapes():
    p = FastRCNNOutputLayers(input_shape=ShapeSpec(channels=16), num_classes=3)
    s, d = p(torch.randn(5, 16))
    assert s.shape == (5, 4) and d.shape == (5, 12)


def test_inference_with_no_proposals_gives_empty_detections():
    from rcnnzoo.config import LazyConfig, configs_root, instantiate

    cfg = LazyConfig.load(configs_root() / "Shapes/faster_rcnn_tiny_fpn.py")
    model = instantiate(cfg.model).eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, 64, 64))
        proposals = Instances((64, 64), proposal_boxes=Boxes(torch.zeros(0, 4)), objectness_logits=torch.zeros(0))
        (detections,), _ = model.roi_heads(None, features, [proposals], None)
    assert len(detections) == 0 and detections.pred_boxes.tensor.shape == (0, 4)
