"""train_linear_svms: R-CNN's hard negative mining finds the negatives a random first cache misses,
ignores the in-between RoIs, and its SVMs drop into LinearSVMOutputLayers."""

from __future__ import annotations

import pytest
import torch

from rcnnzoo.layers import ShapeSpec
from rcnnzoo.modeling import LinearSVMOutputLayers
from rcnnzoo.modeling.roi_heads import fit_linear_svm, train_linear_svms

DIM = 8


def synthetic_problem():
    """Two classes, linearly separable, with negatives a random sample is unlikely to contain.

    Class k's positives sit around ``3 e_k``; 3000 easy negatives around ``-2 e_2``; 8 hard
    negatives of class 0 just below its positives, at ``1.2 e_0`` (an SVM that saw only the easy
    ones puts them on the positive side); 30 background RoIs among class 0's positives with IoU 0.4
    with a class-0 box: ignored by class 0's SVM (they would make it inseparable), clear negatives
    for class 1.
    """
    g = torch.Generator().manual_seed(0)
    eye = torch.eye(DIM)

    def cloud(n: int, centre: torch.Tensor, std: float) -> torch.Tensor:
        return centre + std * torch.randn(n, DIM, generator=g)

    parts = {
        "pos0": cloud(30, 3 * eye[0], 0.2),
        "pos1": cloud(30, 3 * eye[1], 0.2),
        "easy": cloud(3000, -2 * eye[2], 0.2),
        "hard0": cloud(8, 1.2 * eye[0], 0.05),
        "ambiguous0": cloud(30, 3 * eye[0], 0.2),
    }
    labels = {"pos0": 0, "pos1": 1, "easy": 2, "hard0": 2, "ambiguous0": 2}
    ious = {
        "pos0": (1.0, 0.0),
        "pos1": (0.0, 1.0),
        "easy": (0.0, 0.0),
        "hard0": (0.2, 0.0),
        "ambiguous0": (0.4, 0.0),
    }
    features = torch.cat(list(parts.values()))
    label = torch.cat([torch.full((len(v),), labels[k]) for k, v in parts.items()])
    iou = torch.cat([torch.tensor(ious[k]).expand(len(v), 2) for k, v in parts.items()])
    slices, start = {}, 0
    for k, v in parts.items():
        slices[k] = slice(start, start + len(v))
        start += len(v)
    return features, label, iou, slices


def train(rounds: int):
    features, labels, ious, parts = synthetic_problem()
    weights, biases = train_linear_svms(
        features,
        labels,
        ious,
        C=1.0,
        epochs=200,
        hard_negative_rounds=rounds,
        initial_negatives=100,
        generator=torch.Generator().manual_seed(0),
    )
    return features @ weights.T + biases, weights, biases, features, labels, parts


def test_hard_negative_mining_reaches_full_accuracy():
    scores, *_, parts = train(rounds=3)
    # class 0: positives above 0, every pool negative (easy and hard) below
    assert (scores[parts["pos0"], 0] > 0).all()
    assert (scores[parts["easy"], 0] < 0).all() and (scores[parts["hard0"], 0] < 0).all()
    assert (scores[parts["pos1"], 0] < 0).all()
    # the ambiguous RoIs were ignored by class 0 (they lie among its positives) ...
    assert (scores[parts["ambiguous0"], 0] > 0).all()
    # ... and are ordinary negatives for class 1
    assert (scores[parts["pos1"], 1] > 0).all()
    for name in ("pos0", "easy", "hard0", "ambiguous0"):
        assert (scores[parts[name], 1] < 0).all(), name


def test_without_mining_the_hard_negatives_are_missed():
    # the same first cache (100 random of 3038 negatives, none of the 8 hard ones), no mining rounds
    scores, *_, parts = train(rounds=0)
    assert (scores[parts["hard0"], 0] > 0).all()


def test_trained_svms_drop_into_the_predictor():
    scores, weights, biases, features, labels, parts = train(rounds=3)
    predictor = LinearSVMOutputLayers(input_shape=ShapeSpec(channels=DIM), num_classes=2)
    predictor.load_svms(weights, biases)
    with torch.no_grad():
        predicted, _ = predictor(features)
    assert torch.allclose(predicted[:, :2], scores, atol=1e-5)
    # argmax with the background fixed at 0: each positive gets its class, every negative background
    winners = predicted.argmax(dim=1)
    for name in ("pos0", "pos1", "easy", "hard0"):
        assert torch.equal(winners[parts[name]], labels[parts[name]]), name


def test_squared_hinge_reaches_its_optimum():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 6, generator=g, dtype=torch.float64)  # float64: converged to its precision
    y = torch.sign(x @ torch.randn(6, generator=g, dtype=torch.float64) + 0.2)
    w, b = fit_linear_svm(x, y, C=0.5, loss_type="squared_hinge", epochs=200)
    w.requires_grad_(True)
    b.requires_grad_(True)
    slack = torch.relu(1 - y * (x @ w + b))
    (0.5 * w.dot(w) + 0.5 * (slack * slack).sum()).backward()
    # a smooth objective: its gradient vanishes at the optimum (here ~5e-6, the objective being ~21)
    assert w.grad.abs().max() < 1e-4 and b.grad.abs() < 1e-4


def test_class_without_positives_never_fires_and_bad_shapes_raise():
    features = torch.randn(20, 3)
    labels = torch.full((20,), 2)
    labels[:5] = 0
    weights, biases = train_linear_svms(features, labels, torch.zeros(20, 2), C=1.0, epochs=20)
    assert torch.equal(weights[1], torch.zeros(3)) and biases[1].item() == -1.0
    with pytest.raises(ValueError, match="same N samples"):
        train_linear_svms(features, labels[:10], torch.zeros(20, 2))
