import torch

from rcnnzoo.modeling.matcher import Matcher
from rcnnzoo.modeling.sampling import subsample_labels


def test_rpn_thresholds_hand_computed():
    m = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=False)
    iou = torch.tensor([[0.1, 0.5, 0.8, 0.0], [0.2, 0.0, 0.6, 0.29]])  # 2 gt x 4 anchors
    matches, labels = m(iou)
    assert matches.tolist() == [1, 0, 0, 1]
    assert labels.tolist() == [0, -1, 1, 0]


def test_low_quality_matches_take_the_best_anchor_of_each_gt_including_ties():
    m = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
    iou = torch.tensor([[0.4, 0.4, 0.1], [0.0, 0.0, 0.2]])
    _, labels = m(iou)
    # gt0's best IoU 0.4 is shared by anchors 0 and 1; gt1's best is anchor 2 (0.2)
    assert labels.tolist() == [1, 1, 1]


def test_no_ground_truth_gives_all_negative():
    m = Matcher([0.5], [0, 1])
    matches, labels = m(torch.zeros(0, 5))
    assert labels.tolist() == [0] * 5 and matches.tolist() == [0] * 5


def test_subsample_respects_fraction_and_fills_with_negatives():
    torch.manual_seed(0)
    labels = torch.tensor([1] * 200 + [0] * 1000 + [-1] * 50)
    pos, neg = subsample_labels(labels, 256, 0.5, bg_label=0)
    assert len(pos) == 128 and len(neg) == 128
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 128
    few = torch.tensor([1] * 10 + [0] * 1000)
    pos, neg = subsample_labels(few, 256, 0.5, bg_label=0)
    assert len(pos) == 10 and len(neg) == 246


def test_subsample_multiclass_background_label():
    labels = torch.tensor([0, 1, 2, 3, 3, -1])  # 3 = background for K=3
    pos, neg = subsample_labels(labels, 4, 0.25, bg_label=3)
    assert len(pos) == 1 and labels[pos].item() in (0, 1, 2)
    assert sorted(neg.tolist()) == [3, 4]
