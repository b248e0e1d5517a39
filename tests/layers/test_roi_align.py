"""rcnnzoo.layers.roi_align against torchvision.ops.roi_align: the same forward and input gradient
up to float rounding (bit for bit when no gradient is wanted: torchvision's own op), over
randomized cases and the edge cases (adaptive and fixed sampling, aligned or not, any scale and
output size, no RoIs, RoIs partly or wholly off the map, reversed boxes, a float batch index),
plus gradcheck in float64."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align as tv_roi_align

from rcnnzoo.layers import roi_align
from rcnnzoo.layers.roi_align import _Plan, roi_align_backward_cpu, roi_align_forward_cpu
from rcnnzoo.modeling.poolers import RoIAlign
from rcnnzoo.structures import Boxes


def _random_rois(gen: torch.Generator, k: int, n: int, h: int, w: int, scale: float) -> torch.Tensor:
    """Tensor[k, 5]: boxes in image pixels, spilling up to 30% past each side of the map, some
    reversed (x1 < x0) or degenerate, with a per-RoI batch index."""
    size = torch.tensor([w, h]) / scale
    xy = torch.rand(k, 2, generator=gen) * size * 1.6 - 0.3 * size
    wh = torch.rand(k, 2, generator=gen) * size * 1.2 - 2
    batch = torch.randint(0, n, (k, 1), generator=gen).float()
    return torch.cat([batch, xy, xy + wh], dim=1)


def _grads(fn, x: torch.Tensor, rois: torch.Tensor, grad_out: torch.Tensor | None, *args):
    x = x.detach().clone().requires_grad_()
    out = fn(x, rois, *args)
    if grad_out is None:
        grad_out = torch.randn_like(out)
    out.backward(grad_out)
    return out, x.grad, grad_out


def _assert_same(x, rois, output_size, scale, sampling_ratio, aligned):
    args = (output_size, scale, sampling_ratio, aligned)
    out_tv, grad_tv, g = _grads(tv_roi_align, x, rois, None, *args)
    out, grad, _ = _grads(roi_align, x, rois, g, *args)
    with torch.no_grad():
        assert torch.equal(roi_align(x, rois, *args), out_tv)
    if x.dtype == torch.float64:
        torch.testing.assert_close(out, out_tv, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad, grad_tv, rtol=1e-10, atol=1e-12)
    else:  # the sums only run in another order
        torch.testing.assert_close(out, out_tv, rtol=1e-6, atol=1e-6)
        _assert_grad_close(grad, grad_tv, x, rois, g, args)


def _assert_grad_close(grad, grad_tv, x, rois, g, args):
    """Within 1e-5 relative or 1e-6 absolute, or, where a cell sums many terms of both signs,
    within a few float32 roundings of the summed magnitudes (``roi_align``'s gradient of |g|)."""
    _, magnitude, _ = _grads(tv_roi_align, x.double(), rois.double(), g.abs().double(), *args)
    bound = 1e-6 + 1e-5 * grad_tv.abs() + 4 * torch.finfo(torch.float32).eps * magnitude.float()
    excess = ((grad - grad_tv).abs() / bound).max()
    assert excess <= 1, f"gradient off by {excess:.2f} x the bound"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_cases_match_torchvision(dtype):
    gen = torch.Generator().manual_seed(0)
    for case in range(120):
        n = int(torch.randint(1, 3, (), generator=gen))
        c = int(torch.randint(1, 5, (), generator=gen))
        h, w = (int(v) for v in torch.randint(1, 20, (2,), generator=gen))
        scale = (1.0, 0.5, 0.25, 0.3)[case % 4]
        sampling_ratio = (0, 1, 2, -1, 3)[case % 5]
        aligned = bool(case % 2)
        output_size = tuple(int(v) for v in torch.randint(1, 9, (2,), generator=gen))
        rois = _random_rois(gen, int(torch.randint(0, 12, (), generator=gen)), n, h, w, scale)
        x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
        _assert_same(x, rois.to(dtype), output_size, scale, sampling_ratio, aligned)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_fpn_like_level_matches_torchvision(aligned, sampling_ratio):
    # the quick start's sizes, shrunk: many RoIs of 1-30 cells on one level, 7x7 bins
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 32, 40, generator=gen)
    xy = torch.rand(150, 2, generator=gen) * torch.tensor([150.0, 120.0])
    wh = torch.exp(torch.rand(150, 2, generator=gen) * 4.8)
    rois = torch.cat([torch.randint(0, 2, (150, 1), generator=gen).float(), xy, xy + wh], dim=1)
    _assert_same(x, rois, 7, 0.25, sampling_ratio, aligned)


def test_as_accurate_as_torchvision_under_heavy_overlap():
    # 300 overlapping RoIs on a small map: float32 rounding of the long sums shows; ours must be
    # no further from the float64 gradient than torchvision's float32 one
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 24, 24, generator=gen, dtype=torch.float64)
    xy = torch.rand(300, 2, generator=gen, dtype=torch.float64) * 60
    rois = torch.cat([torch.randint(0, 2, (300, 1), generator=gen).double(), xy, xy + 40], dim=1)
    g = torch.randn(300, 4, 7, 7, generator=gen, dtype=torch.float64)
    x32, rois32, g32 = x.float(), rois.float(), g.float()
    _, exact, _ = _grads(tv_roi_align, x32.double(), rois32.double(), g32.double(), 7, 0.25, 0, True)
    _, grad_tv, _ = _grads(tv_roi_align, x32, rois32, g32, 7, 0.25, 0, True)
    _, grad, _ = _grads(roi_align, x32, rois32, g32, 7, 0.25, 0, True)
    err_tv = (grad_tv.double() - exact).abs().max()
    err = (grad.double() - exact).abs().max()
    assert err <= 2 * err_tv + 1e-7, (err, err_tv)


@pytest.mark.parametrize("block", [1, 3, 8, 64])
def test_column_block_sizes(block):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 13, 21, generator=gen)
    rois = _random_rois(gen, 40, 2, 13, 21, 0.5)
    g = torch.randn(40, 3, 5, 4, generator=gen)
    plan = _Plan(rois, x.shape, (5, 4), 0.5, 0, True, block=block)
    expected = torch.ops.torchvision.roi_align(x, rois, 0.5, 5, 4, 0, True)
    torch.testing.assert_close(roi_align_forward_cpu(x, plan), expected, rtol=1e-6, atol=1e-6)
    expected = torch.ops.torchvision._roi_align_backward(g, rois, 0.5, 5, 4, 2, 3, 13, 21, 0, True)
    torch.testing.assert_close(roi_align_backward_cpu(g, plan), expected, rtol=1e-5, atol=1e-6)


def test_edge_cases():
    x = torch.randn(2, 3, 6, 7)
    edges = torch.tensor(
        [
            [0, -50.0, -50.0, -20.0, -20.0],  # wholly off the map, top left
            [1, 40.0, 40.0, 90.0, 90.0],  # wholly off, bottom right
            [1, -3.0, -3.0, 30.0, 30.0],  # covers the map and beyond
            [0, 5.0, 5.0, 5.0, 5.0],  # a point
            [1, 9.0, 7.0, 2.0, 1.0],  # reversed
            [1.7, 2.0, 2.0, 10.0, 8.0],  # float batch index, truncated like torchvision's C cast
            [0, 25.5, 0.0, 27.9, 23.9],  # the last column, across the bottom edge
        ]
    )
    for aligned in (True, False):
        for sampling_ratio in (0, 2):
            _assert_same(x, edges, (3, 2), 0.25, sampling_ratio, aligned)
    # no RoIs at all
    out, grad, _ = _grads(roi_align, x, torch.zeros(0, 5), None, 7, 0.25, 0, True)
    assert out.shape == (0, 3, 7, 7) and torch.equal(grad, torch.zeros_like(x))


def test_box_list_form_and_bad_shapes():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 10, 10, generator=gen, requires_grad=True)
    b0, b1 = (
        torch.tensor([[1.0, 2.0, 30.0, 20.0]]),
        torch.tensor([[0.0, 0.0, 8.0, 8.0], [4.0, 1.0, 39.0, 33.0]]),
    )
    rois = torch.tensor([[0, 1.0, 2.0, 30.0, 20.0], [1, 0.0, 0.0, 8.0, 8.0], [1, 4.0, 1.0, 39.0, 33.0]])
    assert torch.equal(roi_align(x, [b0, b1], 4, 0.25, 0, True), roi_align(x, rois, 4, 0.25, 0, True))
    with pytest.raises(ValueError, match="Tensor\\[K, 5\\]"):
        roi_align(x, torch.zeros(3, 4), 4)
    with pytest.raises(ValueError, match="list of Tensor\\[L, 4\\]"):
        roi_align(x, [torch.zeros(3, 5)], 4)


def test_dispatch():
    x = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 7.0]])
    # no gradient wanted: torchvision's op as is
    assert roi_align(x, rois, 2).grad_fn is None
    assert torch.equal(roi_align(x, rois, 2, 0.5, 0, True), tv_roi_align(x, rois, 2, 0.5, 0, True))
    with torch.no_grad():
        assert roi_align(x.requires_grad_(), rois, 2).grad_fn is None
    # a gradient wanted on the CPU: the vectorized backward
    assert "RoIAlignCPU" in type(roi_align(x, rois, 2).grad_fn).__name__
    # autocast: torchvision's op, which handles it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "RoIAlignCPU" not in type(roi_align(x, rois, 2).grad_fn).__name__
    # half precision: torchvision's op
    half = torch.randn(1, 2, 8, 8, dtype=torch.float16, requires_grad=True)
    assert "RoIAlignCPU" not in type(roi_align(half, rois.half(), 2).grad_fn).__name__


def test_channels_last_input():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, 9, 11, generator=gen).contiguous(memory_format=torch.channels_last)
    rois = _random_rois(gen, 20, 2, 9, 11, 0.5)
    out_tv, grad_tv, g = _grads(tv_roi_align, x, rois, None, 3, 0.5, 0, True)
    out, grad, _ = _grads(roi_align, x, rois, g, 3, 0.5, 0, True)
    torch.testing.assert_close(out, out_tv, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, grad_tv, rtol=1e-5, atol=1e-6)
    assert grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_uses_torchvision():
    x = torch.randn(1, 2, 8, 8, device="cuda", requires_grad=True)
    rois = torch.tensor([[0, 1.0, 1.0, 6.0, 7.0]], device="cuda")
    out = roi_align(x, rois, 2, 1.0, 0, True)
    assert "RoIAlignCPU" not in type(out.grad_fn).__name__
    assert torch.equal(out, tv_roi_align(x, rois, 2, 1.0, 0, True))


@pytest.mark.parametrize("sampling_ratio,aligned", [(0, True), (2, False), (-1, False)])
def test_gradcheck_float64(sampling_ratio, aligned):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # chosen so that no sample falls exactly on a cell edge, where the gradient jumps
    rois = torch.tensor(
        [[0, 1.3, 0.7, 9.1, 8.2], [1, -2.1, 3.3, 6.7, 14.9], [1, 8.9, 5.1, 13.4, 9.7]], dtype=torch.float64
    )
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (3, 2), 0.5, sampling_ratio, aligned), (x,))


def test_multilevel_pooler_gradient_matches_torchvision():
    gen = torch.Generator().manual_seed(6)
    feats = [torch.randn(2, 4, 64 // s, 64 // s, generator=gen, requires_grad=True) for s in (4, 8, 16, 32)]
    boxes = [
        Boxes(torch.tensor([[2.0, 3.0, 20.0, 30.0], [0.0, 0.0, 63.0, 63.0], [10.0, 20.0, 40.0, 28.0]])),
        Boxes(torch.tensor([[5.0, 5.0, 15.0, 12.0], [30.0, 2.0, 62.0, 50.0]])),
    ]
    pooler = RoIAlign(output_size=7, scales=[1 / 4, 1 / 8, 1 / 16, 1 / 32], sampling_ratio=0, aligned=True)
    out = pooler(feats, boxes)
    g = torch.randn(out.shape, generator=gen)
    grads = torch.autograd.grad(out, feats, g)

    import rcnnzoo.modeling.poolers.roi_align as module

    original = module.roi_align
    module.roi_align = tv_roi_align
    try:
        out_tv = pooler(feats, boxes)
        grads_tv = torch.autograd.grad(out_tv, feats, g)
    finally:
        module.roi_align = original
    torch.testing.assert_close(out, out_tv, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, grads_tv):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# channels-last maps without a gradient: one weighted embedding_bag (roi_align_channels_last_cpu)


def _channels_last_module():
    import importlib

    return importlib.import_module("rcnnzoo.layers.roi_align")  # the package re-exports the function


def _channels_last_rois(gen: torch.Generator, n: int, h: int, w: int, scale: float) -> torch.Tensor:
    """Random RoIs of every image (some off the map, reversed or degenerate) plus fixed edge
    cases: wholly off the map, a point, reversed, covering the map and beyond, a float index."""
    size_x, size_y = w / scale, h / scale
    edges = torch.tensor(
        [
            [0, -50.0, -50.0, -20.0, -20.0],
            [n - 1, size_x + 5, size_y + 5, size_x + 40, size_y + 30],
            [0, 5.0, 5.0, 5.0, 5.0],
            [n - 1, size_x / 2, size_y / 2, 1.0, 2.0],
            [n - 1, -3.0, -3.0, size_x + 3, size_y + 3],
            [n - 0.3, 2.0, 2.0, size_x / 3, size_y / 2],
            [0, size_x - 1.5, 0.0, size_x + 0.5, size_y - 0.1],
        ]
    )
    return torch.cat([_random_rois(gen, 30, n, h, w, scale), edges])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_channels_last_inference_matches_torchvision(dtype, aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(8)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for c, output_size, scale in ((3, 7, 0.5), (256, 7, 0.25), (3, 14, 1.0), (256, (14, 5), 0.3)):
        x = torch.randn(3, c, 13, 17, generator=gen, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        rois = _channels_last_rois(gen, 3, 13, 17, scale).to(dtype)
        expected = tv_roi_align(x, rois, output_size, scale, sampling_ratio, aligned)
        out = roi_align(x, rois, output_size, scale, sampling_ratio, aligned)
        assert out.shape == expected.shape and out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, expected, **tol)


def test_channels_last_inference_fpn_like_level():
    # many RoIs of 1-30 cells on one 256-channel level: the pooler's case, in miniature
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 256, 32, 40, generator=gen).contiguous(memory_format=torch.channels_last)
    xy = torch.rand(200, 2, generator=gen) * torch.tensor([150.0, 120.0])
    wh = torch.exp(torch.rand(200, 2, generator=gen) * 4.8)
    rois = torch.cat([torch.randint(0, 2, (200, 1), generator=gen).float(), xy, xy + wh], dim=1)
    for sampling_ratio, aligned in ((2, False), (0, True)):
        with torch.inference_mode():
            out = roi_align(x, rois, 7, 0.25, sampling_ratio, aligned)
        expected = tv_roi_align(x, rois, 7, 0.25, sampling_ratio, aligned)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_channels_last_inference_edge_cases():
    module = _channels_last_module()
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(2, 4, 6, 7, generator=gen).contiguous(memory_format=torch.channels_last)
    rois = _channels_last_rois(gen, 2, 6, 7, 0.5)
    # RoIs of images that do not exist pool zeros (torchvision reads out of bounds)
    missing = torch.tensor([[2, 1.0, 1.0, 9.0, 9.0], [-1, 1.0, 1.0, 9.0, 9.0], [1, 1.0, 1.0, 9.0, 9.0]])
    out = roi_align(x, missing, 3, 0.5, 0, True)
    assert torch.equal(out[:2], torch.zeros(2, 4, 3, 3))
    torch.testing.assert_close(out[2:], tv_roi_align(x, missing[2:], 3, 0.5, 0, True), rtol=1e-5, atol=1e-5)
    # no RoIs, an empty map, no bins
    assert roi_align(x, torch.zeros(0, 5), 7).shape == (0, 4, 7, 7)
    empty = module.roi_align_channels_last_cpu(x[:, :, :0], rois, (2, 3), 0.5, 0, True)
    assert torch.equal(empty, torch.zeros(len(rois), 4, 2, 3))
    assert roi_align(x, rois, (0, 3), 0.5, 0, True).shape == (len(rois), 4, 0, 3)
    # the box-list form
    boxes = [rois[rois[:, 0] == i, 1:] for i in (0, 1)]
    expected = tv_roi_align(x, boxes, 3, 0.5, 2, False)
    torch.testing.assert_close(roi_align(x, boxes, 3, 0.5, 2, False), expected, rtol=1e-5, atol=1e-5)
    # RoIs pooled in several chunks: the same as in one
    whole = module.roi_align_channels_last_cpu(x, rois, (3, 3), 0.5, 0, True)
    for max_pairs in (1, 100, 1000):
        chunked = module.roi_align_channels_last_cpu(x, rois, (3, 3), 0.5, 0, True, max_pairs=max_pairs)
        assert torch.equal(chunked, whole)


def test_channels_last_inference_dispatch(monkeypatch):
    module = _channels_last_module()
    calls = []
    original = module.roi_align_channels_last_cpu

    def recorded(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "roi_align_channels_last_cpu", recorded)

    def used(fn) -> bool:
        calls.clear()
        fn()
        return bool(calls)

    gen = torch.Generator().manual_seed(11)
    nchw = torch.randn(2, 3, 8, 9, generator=gen)
    cl = nchw.contiguous(memory_format=torch.channels_last)
    rois = _random_rois(gen, 10, 2, 8, 9, 0.5)
    args = (3, 0.5, 0, True)
    # channels last, no gradient wanted: the new path
    assert used(lambda: roi_align(cl, rois, *args))
    with torch.no_grad():
        assert used(lambda: roi_align(cl.clone().requires_grad_(), rois, *args))
    # channels last with a gradient: the vectorized autograd function, as before
    calls.clear()
    out = roi_align(cl.clone().requires_grad_(), rois, *args)
    assert "RoIAlignCPU" in type(out.grad_fn).__name__ and not calls
    # channels first: torchvision's op, bit for bit
    assert not used(lambda: roi_align(nchw, rois, *args))
    assert torch.equal(roi_align(nchw, rois, *args), tv_roi_align(nchw, rois, *args))
    # maps that are channels last and channels first at once (C = 1, or H = W = 1): torchvision's
    one_channel = torch.randn(2, 1, 8, 9, generator=gen).contiguous(memory_format=torch.channels_last)
    one_cell = torch.randn(2, 3, 1, 1, generator=gen).contiguous(memory_format=torch.channels_last)
    for x in (one_channel, one_cell):
        assert not used(lambda x=x: roi_align(x, rois, *args))
        assert torch.equal(roi_align(x, rois, *args), tv_roi_align(x, rois, *args))
    # autocast, half precision, boxes wanting a gradient: torchvision's
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not used(lambda: roi_align(cl, rois, *args))
    assert not used(lambda: roi_align(cl.half(), rois.half(), *args))
    assert not used(lambda: roi_align(cl, rois.clone().requires_grad_(), *args))
