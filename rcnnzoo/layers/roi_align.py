"""RoIAlign with vectorized CPU paths for training and channels-last inference; torchvision's numbers.

torchvision's CPU backward is a scalar loop, on one thread, that recomputes every sample point's
bilinear weights for every channel: on 2 CPU cores it was about a fifth of the quick start's
training step. Here, when the input needs a gradient on the CPU, forward and backward are a few
batched torch ops, built on two facts:

* a sample's bilinear weights factor into a y part and an x part, and so does torchvision's
  "outside the map" test, so one RoI's pooling is ``Ay @ X @ Ax^T`` per channel, with
  Ay (Tensor[PH, H]) and Ax (Tensor[PW, W]) summing each bin's sample weights per row and per
  column, and its backward ``Ay^T @ G @ Ax``;
* each RoI touches a few rows per bin row and a window of columns, so the x product is a batched
  matmul over the RoI's window of columns and the y product a sparse one over rows of the
  channels-last map, done as a weighted ``embedding_bag`` (gather in the forward, and in the
  backward a gather sorted by feature-map row instead of a scatter).

The geometry is computed once in the forward and reused by the backward. Results equal
torchvision's up to the order of the float additions (float32: forward within 1e-6, gradient
within 1e-5 relative / 1e-6 absolute or a few roundings of the summed magnitudes where many RoIs
overlap; tests/layers/test_roi_align.py). Calls that want no input gradient (but see below for
channels-last maps), CUDA and other devices, other dtypes and autocast go to torchvision's op
unchanged (bit for bit).

Inference on a channels-last CPU map (convolutions are faster in that format) is one weighted
``embedding_bag`` over the map's rows instead, :func:`roi_align_channels_last_cpu`: torchvision's
kernel would first copy the whole map to channels first and then loop over scalars. Its results
equal torchvision's up to the order of the float additions (float32 within 1e-5).

Measured on 2 CPU cores (OMP_NUM_THREADS=2, otherwise idle machine), per call over all FPN
levels, forward / backward in ms, torchvision -> here:

=====================================================  ===============  ================
case                                                   forward          backward
=====================================================  ===============  ================
quick start, 8 x 32 ch FPN maps (64..8 px), 1024 RoIs  12.1 -> 14.6     81.1 -> 6.4
of 4-140 px (a new RPN), 7x7, sampling_ratio 0
same, RoIs of 16-250 px (a trained RPN)                24.0 -> 20.2     141.9 -> 9.2
same, 256 RoIs, 14x14 (the mask head)                  10.6 -> 11.9     75.6 -> 5.6
R50-FPN: 256 ch, 800x1216 image, 512 RoIs, 4 levels    171 -> 109       801 -> 92
256 ch, one 200x304 map, 512 RoIs of 16-112 px         126 -> 64        496 -> 62
=====================================================  ===============  ================

(The forward includes the geometry the backward reuses; torchvision's forward plus that geometry
was slower, 20 / 36 / 17 ms in the first three rows.) On the quick start's whole training step
(model forward + backward, 8 random 256x256 images, 2 threads, median of 20): Faster R-CNN 0.198
-> 0.153 s at initialization, 0.222 -> 0.151 s with trained weights; Mask R-CNN 0.253 -> 0.201 s
and 0.303 -> 0.197 s.

Inference on channels-last maps (no gradient), 2 threads (a training run shared the machine),
per call over all FPN levels, ms, torchvision on the same maps -> here (torchvision on
channels-first maps in brackets):

=====================================================  ======================
case                                                   forward
=====================================================  ======================
R50-FPN: 256 ch, 800x1216 image, 1000 RoIs of 16-600   362 -> 27 (262)
px on 4 levels, 7x7, sampling_ratio 2, not aligned
same, sampling_ratio 0, aligned                        480 -> 40 (391)
=====================================================  ======================
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align as _tv_roi_align  # also registers torch.ops.torchvision

__all__ = ["roi_align"]


def roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign (He et al. 2017), with ``torchvision.ops.roi_align``'s signature and results.

    Args:
        input (Tensor[N, C, H, W]): the feature map.
        boxes (Tensor[K, 5] or list[Tensor[L, 4]]): ``(batch_index, x0, y0, x1, y1)`` rows, or one
            box tensor per image, in input-image coordinates.
        output_size: (PH, PW), or one int for both.
        spatial_scale: feature-map cells per input-image pixel (1 / stride).
        sampling_ratio: sample points per bin side; <= 0 uses ``ceil(roi_side / output_side)``.
        aligned: shift the boxes by -0.5 cell so pixel centers line up (detectron2's ROIAlignV2).
    Returns:
        Tensor[K, C, PH, PW]; channels last when ``input`` is and no gradient is wanted.
    """
    rois = _as_rois(boxes)
    output_size = _pair(output_size)
    if _use_fast_path(input, rois):
        return _RoIAlignCPU.apply(
            input, rois, output_size, float(spatial_scale), int(sampling_ratio), bool(aligned)
        )
    if _use_channels_last_path(input, rois):
        return roi_align_channels_last_cpu(
            input, rois, output_size, float(spatial_scale), int(sampling_ratio), bool(aligned)
        )
    return _tv_roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)


def _as_rois(boxes: Tensor | list[Tensor]) -> Tensor:
    """Tensor[K, 5] ``(batch_index, x0, y0, x1, y1)`` from either form ``roi_align`` accepts."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"roi_align: a boxes tensor must be Tensor[K, 5], got shape {tuple(boxes.shape)}"
            )
        return boxes
    if not isinstance(boxes, (list, tuple)) or any(b.dim() != 2 or b.shape[1] != 4 for b in boxes):
        raise ValueError("roi_align: boxes must be Tensor[K, 5] or a list of Tensor[L, 4]")
    cat = torch.cat(list(boxes), dim=0)
    index = torch.repeat_interleave(
        torch.arange(len(boxes), dtype=cat.dtype, device=cat.device),
        torch.tensor([len(b) for b in boxes], device=cat.device),
    )
    return torch.cat([index[:, None], cat], dim=1)


def _cpu_float(input: Tensor, rois: Tensor) -> bool:
    """A CPU call in float32/64, outside autocast and scripting: the calls ours can take."""
    return (
        input.device.type == "cpu"
        and rois.device.type == "cpu"
        and input.dtype in (torch.float32, torch.float64)
        and rois.dtype == input.dtype
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_scripting()
    )


def _use_fast_path(input: Tensor, rois: Tensor) -> bool:
    # without a gradient the gain is small (the forward alone is on a par with torchvision's at
    # the quick start's sizes) and torchvision's op gives its exact bits
    return _cpu_float(input, rois) and input.requires_grad and torch.is_grad_enabled()


def _use_channels_last_path(input: Tensor, rois: Tensor) -> bool:
    # torchvision's CPU kernel first copies a channels-last map to channels first; a map that is
    # both (C = 1, or H = W = 1) gains nothing here and keeps torchvision's exact bits
    return (
        _cpu_float(input, rois)
        and input.dim() == 4
        and not (torch.is_grad_enabled() and (input.requires_grad or rois.requires_grad))
        and input.is_contiguous(memory_format=torch.channels_last)
        and not input.is_contiguous()
    )


def roi_align_channels_last_cpu(
    input: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
    max_pairs: int = 1 << 21,
) -> Tensor:
    """RoIAlign of a channels-last map, no gradient: one weighted ``embedding_bag`` over its rows.

    The map, viewed as Tensor[N * H * W, C] (free for channels last), is gathered once: one bag
    per output cell (RoI, bin row, bin column) of the (map row, weight) pairs of its bilinear
    samples, ``wy * wx / count``, zero weights left out.

    Args:
        input (Tensor[N, C, H, W]): channels last; rois (Tensor[K, 5]): as for :func:`roi_align`.
        max_pairs: RoIs are pooled in chunks of at most this many (row, weight) pairs, about 40
            bytes each while they are built (1000 RoIs at 7x7 take 0.5-0.8M: one chunk).
    Returns:
        Tensor[K, C, PH, PW], itself channels last (a view of Tensor[K, PH, PW, C]); equal to
        torchvision's up to the order of the float additions.
    """
    n, c, h, w = input.shape
    ph, pw = output_size
    k = len(rois)
    if k == 0 or ph * pw == 0 or input.numel() == 0:
        return input.new_zeros((k, ph, pw, c)).permute(0, 3, 1, 2)
    rows = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
    y, x = _axis_entries(rois, (n, h, w), output_size, spatial_scale, sampling_ratio, aligned)
    outs = []
    for chunk in _chunks(y[1], x[1], max_pairs):
        index, weight, lengths = _bilinear_pairs(*(t[chunk] for t in y), *(t[chunk] for t in x))
        offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        outs.append(
            F.embedding_bag(
                index, rows, offsets, mode="sum", per_sample_weights=weight, include_last_offset=True
            )
        )
    out = outs[0] if len(outs) == 1 else torch.cat(outs)
    return out.view(k, ph, pw, c).permute(0, 3, 1, 2)


def _axis_entries(
    rois: Tensor,
    map_shape: tuple[int, int, int],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Per axis and (RoI, bin), the map cells its samples touch and their summed weights.

    Returns:
        ``(rows, weights)`` for y and ``(cells, weights)`` for x, Tensor[R, P, E] each, a cell
        once per bin (neighbouring samples share cells: with an adaptive ``sampling_ratio`` they
        are at most one cell apart, so this shrinks the 2D pairs by up to (S + 1)^2 / (2S)^2),
        zero weights where none. y holds map rows ``(batch * H + y) * W`` and weights divided by
        the samples per bin, all zero for RoIs whose image does not exist.
    """
    n, h, w = map_shape
    ph, pw = output_size
    ys, xs, count, batch = _samples_2d(rois, (h, w), (ph, pw), spatial_scale, sampling_ratio, aligned)
    exists = (batch >= 0) & (batch < n)  # undefined behaviour in torchvision; zeros here
    y_first, y_weights = _bands(ys)  # [R, PH], [R, PH, Ey]: the summed weight of cell first + e
    x_first, x_weights = _bands(xs)
    y_rows = (batch.where(exists, 0)[:, None, None] * h + y_first[:, :, None]) * w
    y_rows = y_rows + torch.arange(y_weights.shape[2]) * w
    y_weights = (y_weights / count[:, None, None]).where(exists[:, None, None], 0)
    x_cells = x_first[:, :, None] + torch.arange(x_weights.shape[2])
    return (y_rows, y_weights), (x_cells, x_weights)


def _chunks(y_weights: Tensor, x_weights: Tensor, max_pairs: int) -> list[slice]:
    """Slices of consecutive RoIs with at most ``max_pairs`` pairs each (or one RoI)."""
    per_roi = ((y_weights != 0).sum((1, 2)) * (x_weights != 0).sum((1, 2))).cumsum(0)
    if len(per_roi) == 0 or int(per_roi[-1]) <= max_pairs:
        return [slice(None)]
    chunks, start = [], 0
    while start < len(per_roi):
        done = int(per_roi[start - 1]) if start else 0
        stop = max(int(torch.searchsorted(per_roi, done + max_pairs, right=True)), start + 1)
        chunks.append(slice(start, stop))
        start = stop
    return chunks


def _bilinear_pairs(
    y_rows: Tensor, y_weights: Tensor, x_cells: Tensor, x_weights: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """The bags of :func:`roi_align_channels_last_cpu`, from :func:`_axis_entries`' entries.

    A bag is the outer product of its bin row's nonzero y entries and its bin column's nonzero x
    entries. It is built in segments, one per (bag, y entry), each that y entry times a slice of
    the compacted x entries: the pairs come out in place, with no padded product formed and
    dropped.

    Returns:
        index (Tensor[T]): rows ``(batch * H + y) * W + x`` of the channels-last map;
        weight (Tensor[T]): their weights, all nonzero;
        lengths (Tensor[R * PH * PW]): pairs per bag, in (RoI, bin row, bin column) order.
    """
    r, ph, _ = y_rows.shape
    pw = x_cells.shape[1]
    y_nonzero, x_nonzero = y_weights != 0, x_weights != 0
    y_num, x_num = y_nonzero.sum(2).view(-1), x_nonzero.sum(2).view(-1)  # per (RoI, bin)
    # compacted, bin b's entries at [first[b], first[b] + num[b])
    y_rows, y_weights = y_rows[y_nonzero], y_weights[y_nonzero]
    x_cells, x_weights = x_cells[x_nonzero], x_weights[x_nonzero]
    y_first, x_first = torch.cumsum(y_num, 0) - y_num, torch.cumsum(x_num, 0) - x_num
    # per bag (RoI, bin row, bin column): its y and x bins
    roi = torch.arange(r)[:, None, None]
    bag_y = (roi * ph + torch.arange(ph)[:, None]).expand(r, ph, pw).reshape(-1)
    bag_x = (roi * pw + torch.arange(pw)).expand(r, ph, pw).reshape(-1)
    bag_y_num, bag_x_num = y_num.index_select(0, bag_y), x_num.index_select(0, bag_x)
    lengths = bag_y_num * bag_x_num
    # per segment (bag, y entry): the y entry, and its x entries' first index less its first pair
    num_segments = int(bag_y_num.sum())
    seg_bag = torch.repeat_interleave(bag_y_num, output_size=num_segments)
    seg_y = y_first.index_select(0, bag_y) - (torch.cumsum(bag_y_num, 0) - bag_y_num)
    seg_y = seg_y.index_select(0, seg_bag) + torch.arange(num_segments)
    seg_num = bag_x_num.index_select(0, seg_bag)
    seg_x = x_first.index_select(0, bag_x).index_select(0, seg_bag) - (torch.cumsum(seg_num, 0) - seg_num)
    # per pair
    total = int(lengths.sum())
    pair_seg = torch.repeat_interleave(seg_num, output_size=total)
    pos = torch.arange(total) + seg_x.index_select(0, pair_seg)
    index = y_rows.index_select(0, seg_y).index_select(0, pair_seg) + x_cells.index_select(0, pos)
    weight = y_weights.index_select(0, seg_y).index_select(0, pair_seg) * x_weights.index_select(0, pos)
    return index, weight, lengths


class _RoIAlignCPU(torch.autograd.Function):
    """:func:`roi_align_forward_cpu` and :func:`roi_align_backward_cpu`, sharing one :class:`_Plan`."""

    @staticmethod
    def forward(ctx, input, rois, output_size, spatial_scale, sampling_ratio, aligned):
        ctx.plan = _Plan(rois, input.shape, output_size, spatial_scale, sampling_ratio, aligned)
        ctx.channels_last = input.dim() == 4 and not input.is_contiguous()
        ctx.channels_last &= input.is_contiguous(memory_format=torch.channels_last)
        return roi_align_forward_cpu(input, ctx.plan)

    @staticmethod
    def backward(ctx, grad_output):
        grad = roi_align_backward_cpu(grad_output, ctx.plan, channels_last=ctx.channels_last)
        return grad, None, None, None, None, None


class _Plan:
    """Where every RoI's bilinear samples fall, set out for the two products of
    :func:`roi_align_backward_cpu` (and :func:`roi_align_forward_cpu`, their transposes).

    RoIs are sorted by ``num_blocks``, the blocks of ``block`` feature-map columns they touch,
    so that each count's RoIs are one slice of the packed tensors:

    * ``ax`` (Tensor[sum(num_blocks) * block, PW]): Ax / count of all RoIs packed, row
      ``col_base[r] + j`` holding column ``first_block[r] * block + j`` of RoI r;
    * the y matrix's nonzeros ``(target, source, weight)``: feature-map block ``target`` (row of
      the [N * H * blocks_per_row, block * C] map) and row ``source`` of v, the
      [sum(PH * num_blocks), block * C] tensor of (RoI, bin row, block) slices.
    """

    def __init__(
        self,
        rois: Tensor,
        input_shape: tuple[int, int, int, int],
        output_size: tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
        block: int | None = None,
    ):
        """
        Args:
            rois (Tensor[K, 5]): as for :func:`roi_align`; input_shape: (N, C, H, W) of the map.
            block: columns per block (default 256 // C, at most 8: rows of about 256 floats).
        """
        n, c, h, w = input_shape
        ph, pw = output_size
        if block is None:
            block = max(1, min(8, 256 // max(c, 1)))
        self.block = block = max(1, min(block, max(w, 1)))
        self.blocks_per_row = -(-w // block)
        self.input_shape, self.output_size = tuple(input_shape), (ph, pw)
        self.num_rois = len(rois)
        self.group_sizes = [len(rois)]  # all RoIs touch nothing, until shown otherwise
        if len(rois) == 0 or n * c * h * w == 0:
            return

        ys, xs, count, batch = _samples_2d(rois, (h, w), (ph, pw), spatial_scale, sampling_ratio, aligned)

        # no blocks for RoIs that touch no cell, or whose image does not exist (undefined
        # behaviour in torchvision)
        first_block = xs.first // block
        num_blocks = (xs.last // block + 1 - first_block).clamp(min=0)
        num_blocks = torch.where((ys.last >= 0) & (xs.last >= 0) & (batch >= 0) & (batch < n), num_blocks, 0)
        self.order = order = torch.argsort(num_blocks, stable=True)
        num_blocks, first_block, batch = num_blocks[order], first_block[order], batch[order]
        self.group_sizes = torch.bincount(num_blocks).tolist()
        if len(self.group_sizes) == 1:
            return
        num_cols = num_blocks * block
        col_base = torch.cumsum(num_cols, 0) - num_cols

        cells, weights = xs.cells[order], xs.weights[order] / count[order, None, None]
        col = cells - (first_block * block)[:, None, None]  # [R, PW, 2S]
        inside = (weights != 0) & (col < num_cols[:, None, None])
        flat = ((col_base[:, None, None] + col) * pw + torch.arange(pw)[:, None]).where(inside, 0)
        ax = weights.new_zeros(int(num_cols.sum()) * pw)
        self.ax = ax.index_add_(0, flat.view(-1), weights.where(inside, 0).view(-1)).view(-1, pw)

        y_first, y_weight = _bands(ys)  # [R, PH], [R, PH, K]
        y_first, y_weight = y_first[order], y_weight[order]
        roi = torch.repeat_interleave(torch.arange(len(rois)), num_blocks)  # one per (RoI, block)
        block_in_roi = torch.arange(len(roi)) - (col_base // block)[roi]
        y = y_first[roi][:, :, None] + torch.arange(y_weight.shape[2])  # [P, PH, K]
        column = (first_block[roi] + block_in_roi)[:, None, None]
        target = (batch[roi, None, None] * h + y) * self.blocks_per_row + column
        source = (col_base[roi, None] // block) * ph + torch.arange(ph) * num_blocks[roi, None]
        source = source + block_in_roi[:, None]  # [P, PH]
        # ordered by source, the row of v, as the forward's gather wants it
        by_source = torch.empty_like(source.view(-1)).scatter_(
            0, source.view(-1), torch.arange(source.numel())
        )
        weight = y_weight[roi].view(-1, y_weight.shape[2])[by_source]
        keep = weight != 0
        self.target = target.view(-1, y_weight.shape[2])[by_source][keep]
        self.weight = weight[keep]
        self.source = torch.arange(len(by_source))[:, None].expand(keep.shape)[keep]
        self.per_source = keep.sum(1)

    @property
    def empty(self) -> bool:
        return len(self.group_sizes) == 1

    def groups(self):
        """Yield ``(roi_slice, col_slice, k)``: the sorted RoIs touching k blocks, and their
        rows of ``ax``."""
        roi0, col0 = self.group_sizes[0], 0
        for k, size in enumerate(self.group_sizes[1:], start=1):
            if size:
                cols = size * k * self.block
                yield slice(roi0, roi0 + size), slice(col0, col0 + cols), k
                roi0, col0 = roi0 + size, col0 + cols


def roi_align_forward_cpu(input: Tensor, plan: _Plan) -> Tensor:
    """RoIAlign of ``input`` (Tensor[N, C, H, W]) as the transposes of the backward's products.

    Returns:
        Tensor[K, C, PH, PW]; equal to torchvision's up to the order of the float additions.
    """
    n, c, h, w = plan.input_shape
    ph, pw = plan.output_size
    out = input.new_zeros((plan.num_rois, c, ph, pw))
    if plan.empty:
        return out
    block = plan.block
    x = input.new_zeros((n, h, plan.blocks_per_row * block, c))
    _copy_by_rows(x[:, :, :w], input.permute(0, 2, 3, 1))
    offsets = torch.zeros(len(plan.per_source) + 1, dtype=torch.int64)
    torch.cumsum(plan.per_source, 0, out=offsets[1:])
    v = F.embedding_bag(
        plan.target,
        x.view(-1, block * c),
        offsets,
        mode="sum",
        per_sample_weights=plan.weight,
        include_last_offset=True,
    )
    v = v.view(-1, c)  # rows (RoI, bin row, column)
    for rois, cols, k in plan.groups():
        size = rois.stop - rois.start
        u = v[cols.start * ph : cols.stop * ph].view(size, ph, k * block, c).permute(0, 3, 1, 2)
        prod = torch.bmm(u.reshape(size, c * ph, k * block), plan.ax[cols].view(size, k * block, pw))
        out[plan.order[rois]] = prod.view(size, c, ph, pw)
    return out


def roi_align_backward_cpu(grad_output: Tensor, plan: _Plan, channels_last: bool = False) -> Tensor:
    """The gradient of RoIAlign with respect to its input, in vectorized torch ops.

    Args:
        grad_output (Tensor[K, C, PH, PW]).
        channels_last: return it in that memory format (the one it is computed in).
    Returns:
        Tensor[N, C, H, W], contiguous in the memory format asked for.

    Two steps, one per axis:

    1. x: per RoI, ``v[ph, j, :] = sum_pw Ax[pw, j] / count * g[:, ph, pw]`` for the columns j
       it touches, rounded out to whole blocks: one batched matmul per block count.
    2. y: every (RoI, bin row, block) slice of v, ``block * C`` floats, is added times its row
       weights into the feature-map blocks it touches: a sparse matrix (a few nonzeros per
       slice) times v, as a weighted ``embedding_bag`` over the nonzeros sorted by target.
    """
    n, c, h, w = plan.input_shape
    ph, pw = plan.output_size
    if plan.empty:
        grad = grad_output.new_zeros(plan.input_shape)
        return grad.contiguous(memory_format=torch.channels_last) if channels_last else grad
    block = plan.block
    g = grad_output[plan.order].view(-1, c * ph, pw)
    v = grad_output.new_empty((len(plan.ax) * ph, c))
    for rois, cols, k in plan.groups():
        size = rois.stop - rois.start
        prod = torch.bmm(g[rois], plan.ax[cols].view(size, k * block, pw).transpose(1, 2))
        v[cols.start * ph : cols.stop * ph].view(size, ph, k * block, c).copy_(
            prod.view(size, c, ph, k * block).permute(0, 2, 3, 1)
        )
    by_target = torch.argsort(plan.target, stable=True)
    num_rows = n * h * plan.blocks_per_row
    offsets = torch.zeros(num_rows + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(plan.target, minlength=num_rows), 0, out=offsets[1:])
    grad = F.embedding_bag(
        plan.source[by_target],
        v.view(-1, block * c),
        offsets,
        mode="sum",
        per_sample_weights=plan.weight[by_target],
        include_last_offset=True,
    )
    grad = grad.view(n, h, plan.blocks_per_row * block, c)[:, :, :w]
    if channels_last:
        return grad.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    return _channels_first(grad)


def _channels_first(x: Tensor) -> Tensor:
    """Tensor[N, C, H, W], contiguous, from x (Tensor[N, H, W, C])."""
    n, h, w, c = x.shape
    return _copy_by_rows(x.new_empty((n, c, h, w)).permute(0, 2, 3, 1), x).permute(0, 3, 1, 2)


def _copy_by_rows(dst: Tensor, src: Tensor) -> Tensor:
    """``dst.copy_(src)`` for Tensor[N, H, W, C] views of which one is channels first, a few
    image rows at a time: one copy of a large map walks memory with cache-hostile strides (3x
    slower at 200x304x256), slabs of about 256 KB stay in cache."""
    n, h, w, c = dst.shape
    rows = max(1, (1 << 16) // max(w * c, 1))
    if rows >= h:
        return dst.copy_(src)
    for i in range(n):
        for y in range(0, h, rows):
            dst[i, y : y + rows].copy_(src[i, y : y + rows])
    return dst


class _Samples:
    """Bilinear sample points of every RoI along one axis.

    ``cells``/``weights`` (Tensor[R, P, 2S]): for bin p, the two cells each of the S samples
    sits between and their weights (zero for samples outside the map, and for padding samples
    past the RoI's own grid). ``first``/``last`` (Tensor[R]): the cells any sample touches (-1
    when none does). ``grid`` (Tensor[R]): samples per bin.
    """

    def __init__(self, grid: Tensor, cells: Tensor, weights: Tensor, valid: Tensor):
        self.grid, self.cells, self.weights = grid, cells, weights
        big = torch.iinfo(torch.int64).max
        valid = torch.cat([valid, valid], dim=2).flatten(1)
        if valid.shape[1] == 0:
            self.first = self.last = torch.full_like(grid, -1)
            return
        self.last = torch.where(valid, cells.flatten(1), -1).amax(1)
        self.first = torch.where(valid, cells.flatten(1), big).amin(1).where(self.last >= 0, -1)


def _samples_2d(
    rois: Tensor,
    map_size: tuple[int, int],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> tuple[_Samples, _Samples, Tensor, Tensor]:
    """Both axes' samples of every RoI (Tensor[K, 5]) on an (H, W) map, with the samples per
    bin (Tensor[K], float) and the image index (Tensor[K], int64)."""
    (h, w), (ph, pw) = map_size, output_size
    scale = torch.tensor(spatial_scale, dtype=rois.dtype)
    offset = 0.5 if aligned else 0.0
    ys = _samples(rois[:, 2], rois[:, 4], scale, offset, aligned, ph, h, sampling_ratio)
    xs = _samples(rois[:, 1], rois[:, 3], scale, offset, aligned, pw, w, sampling_ratio)
    count = (ys.grid * xs.grid).clamp(min=1).to(rois.dtype)
    batch = rois[:, 0].to(torch.int64)  # C cast of the float index: truncation towards zero
    return ys, xs, count, batch


def _samples(
    lo: Tensor,
    hi: Tensor,
    scale: Tensor,
    offset: float,
    aligned: bool,
    bins: int,
    size: int,
    sampling_ratio: int,
) -> _Samples:
    """Sample positions and weights along one axis, with torchvision's float arithmetic.

    Args:
        lo, hi (Tensor[R]): the box's start and end along the axis, in image pixels.
        bins: output cells along the axis; size: feature-map cells along it.
    """
    dtype = lo.dtype
    start = lo * scale - offset
    length = hi * scale - offset - start
    if not aligned:  # the original RoIAlign makes every box at least one cell long
        length = length.clamp(min=1.0)
    bin_size = length / bins
    if sampling_ratio > 0:
        grid = torch.full_like(lo, sampling_ratio, dtype=torch.int64)
    else:
        grid = torch.ceil(bin_size).to(torch.int64)
    num = max(int(grid.max()), 0) if len(grid) else 0
    # the same operations in the same order as torchvision's kernel: positions match bit for bit
    bin_start = start[:, None] + torch.arange(bins, dtype=dtype) * bin_size[:, None]  # [R, P]
    step = (torch.arange(num, dtype=dtype) + 0.5) * bin_size[:, None] / grid[:, None].to(dtype)  # [R, S]
    pos = bin_start[:, :, None] + step[:, None, :]  # [R, P, S]
    valid = (pos >= -1.0) & (pos <= size) & (torch.arange(num) < grid[:, None])[:, None, :]
    pos = pos.clamp(min=0)
    low = pos.to(torch.int64)
    at_edge = low >= size - 1
    low = low.where(~at_edge, size - 1)
    frac = (pos - low.to(dtype)).where(~at_edge, 0.0)
    zero = torch.zeros((), dtype=dtype)
    weights = torch.cat([(1.0 - frac).where(valid, zero), frac.where(valid, zero)], dim=2)
    cells = torch.cat([low, (low + 1).where(~at_edge, low)], dim=2)
    return _Samples(grid, cells, weights, valid)


def _bands(samples: _Samples) -> tuple[Tensor, Tensor]:
    """Per (RoI, bin), the summed weight of each cell the bin's samples touch.

    Returns:
        first (Tensor[R, P]): the first cell of the bin's band (0 when it touches none);
        weights (Tensor[R, P, K]): weight of cell ``first + k``, K the longest band.
    """
    cells, weights = samples.cells, samples.weights
    touched = weights != 0
    big = torch.iinfo(torch.int64).max
    first = torch.where(touched, cells, big).amin(2) if cells.shape[2] else cells.new_zeros(cells.shape[:2])
    last = torch.where(touched, cells, -1).amax(2) if cells.shape[2] else cells.new_full(cells.shape[:2], -1)
    first = first.where(last >= 0, 0)
    k = max(int((last - first + 1).max()), 1) if last.numel() else 1
    index = (cells - first[:, :, None]).clamp(0, k - 1)
    out = weights.new_zeros(cells.shape[:2] + (k,))
    return first, out.scatter_add_(2, index, weights.where(touched, 0))
