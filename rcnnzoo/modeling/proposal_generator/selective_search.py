"""Selective search (Uijlings et al. 2013): class-agnostic proposals from hierarchical grouping.

The proposals of R-CNN, SPPnet and Fast R-CNN. The grouping runs in OpenCV
(``cv2.ximgproc.segmentation``) on the CPU, one image at a time: about 0.25 s for a 256 px image
in "fast" mode, several seconds for a 600 px image in "quality" mode. Training on them is
therefore done from a file made once with ``tools/precompute_proposals.py``
(:class:`~rcnnzoo.modeling.proposal_generator.PrecomputedProposals`); this module runs them live,
for evaluation and for making such files.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch import nn

from rcnnzoo.structures import Boxes, ImageList, Instances

from .build import PROPOSAL_GENERATOR_REGISTRY

__all__ = ["SelectiveSearch", "selective_search_boxes", "SELECTIVE_SEARCH_MODES"]

logger = logging.getLogger(__name__)

# mode -> the OpenCV method that configures the strategies (colour spaces, k values, similarity
# measures): "fast" and "quality" are the paper's Selective Search Fast / Quality.
SELECTIVE_SEARCH_MODES = {
    "fast": "switchToSelectiveSearchFast",
    "quality": "switchToSelectiveSearchQuality",
    "single": "switchToSingleStrategy",
}


@functools.cache
def _c_rand_seeder():
    """``srand`` of the C library, or None where it cannot be found."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).srand
    except (OSError, AttributeError, TypeError):
        return None


def _seed_opencv_ranking(seed: int) -> None:
    # OpenCV ranks the regions by level x a draw from the C library's rand() (the paper's
    # pseudo-random ranking), and cv2.setRNGSeed does not reach it: seeding rand() is the only
    # way to get the same proposals, in the same order, for the same image.
    srand = _c_rand_seeder()
    if srand is None:
        logger.warning("Could not find the C library's srand(): selective search order is not reproducible")
        return
    srand(ctypes.c_uint(seed % 2**32))


@contextlib.contextmanager
def _opencv_threads(num_threads: int | None) -> Iterator[None]:
    """Set OpenCV's (process-wide) thread count for the block, then restore it."""
    if num_threads is None:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(int(num_threads))
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def selective_search_boxes(
    image_bgr: np.ndarray,
    mode: str = "fast",
    *,
    downscale: int | None = None,
    seed: int | None = 0,
) -> np.ndarray:
    """Selective search on one image.

    Args:
        image_bgr: np.ndarray[H, W, 3] uint8, BGR (OpenCV's colour conversions assume it).
        mode: one of :data:`SELECTIVE_SEARCH_MODES`.
        downscale: if set, run on a copy resized so that its short side is at most this many
            pixels, and scale the boxes back to ``image_bgr``'s frame.
        seed: seeds the ranking (see :class:`SelectiveSearch`); None leaves it to chance.

    Returns:
        np.ndarray[P, 4] float32, XYXY in ``image_bgr``'s pixels, in selective search's order
        (best ranked first).
    """
    height, width = image_bgr.shape[:2]
    scale = 1.0
    if downscale is not None and min(height, width) > downscale:
        scale = downscale / min(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image_bgr))
    getattr(search, SELECTIVE_SEARCH_MODES[mode])()
    if seed is not None:
        _seed_opencv_ranking(seed)
    rects = np.asarray(search.process(), dtype=np.float32).reshape(-1, 4)  # XYWH
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    if scale != 1.0:
        # each axis by its own factor: the rounded resized size is not exactly scale x the original
        small_h, small_w = image_bgr.shape[:2]
        boxes *= np.array([width / small_w, height / small_h] * 2, dtype=np.float32)
    np.clip(boxes, 0, np.array([width, height] * 2, dtype=np.float32), out=boxes)
    return boxes


def _to_bgr_uint8(image: torch.Tensor, input_format: str) -> np.ndarray:
    """Tensor[3, H, W] (uint8, or float in 0..255) in ``input_format`` -> np.ndarray[H, W, 3] uint8 BGR."""
    if image.dtype != torch.uint8:
        image = image.round().clamp(0, 255).to(torch.uint8)
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    if input_format == "RGB":
        array = array[:, :, ::-1]
    return np.ascontiguousarray(array)


def _rank_scores(num: int, device: torch.device) -> torch.Tensor:
    """Tensor[num]: 0, -1, -2, ...: scores that sort like selective search's ranking."""
    return torch.arange(0.0, -num, -1.0, device=device)


@PROPOSAL_GENERATOR_REGISTRY.register()
class SelectiveSearch(nn.Module):
    """Selective search proposals for each image of the batch; no losses, no parameters.

    It reads the images themselves (``batched_inputs[i]["image"]``, the resized uint8 image in
    the model's ``input_format``), not the backbone's features: a meta-architecture passes
    ``batched_inputs=`` to proposal generators with ``uses_batched_inputs = True``.

    Proposals keep selective search's order; their ``objectness_logits`` are ``-rank``
    (0, -1, -2, ...), so sorting by score, as the RoI heads and the evaluators do, keeps it.

    Args:
        mode: "fast" (the paper's Selective Search Fast: HSV and Lab, k = 50 and 100, two
            similarity combinations), "quality" (5 colour spaces, 4 values of k, ~4x slower and
            ~2x more boxes) or "single" (one strategy: quickest, fewest boxes).
        max_proposals: (train, test) number of proposals kept per image, best ranked first.
        min_size: drop boxes whose width or height is below this, in the model's input pixels
            (R-CNN dropped boxes under 20 px in the original image).
        downscale: run on an image resized so its short side is at most this many pixels
            (None: the input as it is); the time grows a little faster than the pixel count.
            Boxes are mapped back to the input.
        num_threads: OpenCV threads while searching (``cv2.setNumThreads`` is process-wide:
            the previous value is restored after each call); None leaves it as it is.
        seed: the ranking's ties are broken at random by OpenCV; a seed (set for each image
            through the C library's ``srand``, which OpenCV draws from) gives the same
            proposals in the same order for the same image, wherever it runs. None leaves it
            to chance.
        input_format: channel order of the model's images ("BGR" or "RGB"); the model
            passes its own.
    """

    # The meta-architecture passes batched_inputs=... (the images) to such generators.
    uses_batched_inputs = True
    # The backbone's features are not used: a proposal-only model may run without a backbone.
    needs_features = False

    def __init__(
        self,
        *,
        mode: str = "fast",
        max_proposals: tuple[int, int] = (2000, 2000),
        min_size: float = 0.0,
        downscale: int | None = None,
        num_threads: int | None = 1,
        seed: int | None = 0,
        input_format: str = "BGR",
    ):
        super().__init__()
        if mode not in SELECTIVE_SEARCH_MODES:
            raise ValueError(
                f"SelectiveSearch mode must be one of {list(SELECTIVE_SEARCH_MODES)}, got {mode!r}"
            )
        if input_format not in ("BGR", "RGB"):
            raise ValueError(f"input_format must be 'BGR' or 'RGB', got {input_format!r}")
        if downscale is not None and downscale < 1:
            raise ValueError(f"downscale must be a positive short-side length or None, got {downscale}")
        self.mode = mode
        self.max_proposals = {True: int(max_proposals[0]), False: int(max_proposals[1])}
        self.min_size = float(min_size)
        self.downscale = downscale
        self.num_threads = num_threads
        self.seed = seed
        self.input_format = input_format

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, max_proposals=({self.max_proposals[True]}, {self.max_proposals[False]}), "
            f"min_size={self.min_size}, downscale={self.downscale}"
        )

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor] | None,
        gt_instances: list[Instances] | None = None,
        *,
        batched_inputs: list[dict],
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """
        Args:
            images: the padded batch; only its ``image_sizes`` and device are used.
            features: unused.
            gt_instances: unused.
            batched_inputs: the model's inputs; ``"image"`` is uint8 Tensor[3, H, W] in
                ``input_format``, of size ``images.image_sizes[i]``.
        Returns:
            proposals: per image, Instances(proposal_boxes: Boxes[P] in the image's (H, W) frame,
                objectness_logits: Tensor[P]), best ranked first; losses: {}.
        """
        proposals = []
        with _opencv_threads(self.num_threads):
            for inputs, size in zip(batched_inputs, images.image_sizes):
                image = inputs["image"]
                if tuple(image.shape[-2:]) != tuple(size):
                    raise ValueError(
                        f"Input image {tuple(image.shape[-2:])} does not match the batch's image size {size}"
                    )
                boxes = self._propose(_to_bgr_uint8(image, self.input_format))
                proposals.append(
                    Instances(
                        size,
                        proposal_boxes=Boxes(torch.from_numpy(boxes).to(images.device)),
                        objectness_logits=_rank_scores(len(boxes), images.device),
                    )
                )
        return proposals, {}

    def _propose(self, image_bgr: np.ndarray) -> np.ndarray:
        """np.ndarray[P, 4] float32: the kept boxes of one image, best ranked first."""
        boxes = selective_search_boxes(image_bgr, self.mode, downscale=self.downscale, seed=self.seed)
        wh = boxes[:, 2:] - boxes[:, :2]
        boxes = boxes[(wh >= self.min_size).all(axis=1) & (wh > 0).all(axis=1)]
        return boxes[: self.max_proposals[self.training]]
