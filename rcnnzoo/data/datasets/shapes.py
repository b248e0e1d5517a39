"""A synthetic COCO-format dataset of circles, rectangles and triangles ("shapes").

It needs no download and is the default for the CPU quick start and the tests. Images are
generated on first use from a seed, written in COCO format under
``$RCNNZOO_DATASETS/shapes/<split>-v<version>-<params hash>/`` (``<split>/*.png`` and
``instances_<split>.json``) and read back through :func:`load_coco_json`, so a
model trained on it exercises the same path as a user's COCO data.

What makes it a detection problem rather than a toy:

* 1-8 objects per image, from ~10 px up to ~60% of the short image side, random colours,
  sometimes with low contrast against the background;
* objects are drawn in order, so later ones occlude earlier ones. Each annotation is the
  *visible* part of its object (mask, box of the mask, area of the mask); an object less than
  40% visible, or with a visible part only a few pixels wide, is not drawn at all, so nothing
  unlabelled that looks like a class is ever shown;
* backgrounds with random gradients, smooth blotches, Gaussian noise and distractors (strokes,
  arcs, zig-zags, amorphous translucent blobs) that are none of the classes;
* image sides vary independently in 192-320 px.

Each image is generated from ``np.random.default_rng([seed, index])``, so the same seed gives
byte-identical files (for the same numpy/OpenCV versions), whatever the number of images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pycocotools.mask as mask_util
from tqdm import tqdm

from ..catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json
from .paths import DatasetPath, get_datasets_root

__all__ = ["SHAPES_CLASSES", "ShapesParams", "generate_shapes", "register_shapes", "prepare_shapes", "shapes_dirname"]

logger = logging.getLogger(__name__)

SHAPES_CLASSES: tuple[str, ...] = ("circle", "rectangle", "triangle")
# Bump when the generator's output changes, so cached copies are not reused.
_GENERATOR_VERSION = 1
_SUBPIXEL_SHIFT = 4  # cv2 drawing with 4 fractional bits: sizes and centres need not be integers
_SUBPIXEL = 1 << _SUBPIXEL_SHIFT


@dataclass(frozen=True)
class ShapesParams:
    """Knobs of the generator (all sizes in pixels)."""

    min_side: int = 192  # each image side is drawn uniformly from [min_side, max_side]
    max_side: int = 320
    max_objects: int = 8  # 1..max_objects objects are attempted per image
    min_object_size: float = 12.0  # diameter of the circle circumscribing the shape (boxes from ~9 px)
    max_object_frac: float = 0.6  # of the short image side
    min_visible_frac: float = 0.4  # drop objects whose visible part is smaller than this fraction
    min_visible_side: int = 5  # ... or whose visible box is thinner than this
    min_rectangle_side: float = 5.0  # a thinner rectangle would read as a stroke
    low_contrast_prob: float = 0.2
    cluster_prob: float = 0.4  # place an object next to an earlier one, to make occlusion common


# ----------------------------------------------------------------------------- backgrounds


def _smooth_noise(
    rng: np.random.Generator, h: int, w: int, channels: int, cells: tuple[int, int]
) -> np.ndarray:
    """Float32[h, w, channels] smooth random field in about [-1, 1]: a grid of ``cells`` (min, max)
    random values per side, upsampled."""
    gh, gw = rng.integers(cells[0], cells[1] + 1, size=2)
    grid = rng.uniform(-1, 1, size=(gh, gw, channels)).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return field.reshape(h, w, channels)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Float32[h, w, 3]: a two-colour linear gradient plus smooth coloured blotches."""
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xs * np.cos(angle) + ys * np.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c0 + t[..., None] * (c1 - c0)
    img += _smooth_noise(rng, h, w, 3, cells=(2, 6)) * rng.uniform(0, 40)
    return img


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0, 255, size=3))


def _draw_distractors(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw, in place, things that are none of the classes: strokes, arcs, zig-zags and amorphous blobs.

    Arcs span at most 200 degrees and strokes are thin, so none reads as a circle or a polygon.
    """
    h, w = img.shape[:2]
    for _ in range(rng.integers(0, 7)):  # straight strokes and zig-zags
        n = int(rng.integers(2, 6))
        start = rng.uniform((0, 0), (w, h))
        steps = rng.normal(0, min(h, w) / 5, size=(n - 1, 2))
        pts = np.concatenate([start[None], start + np.cumsum(steps, axis=0)])
        cv2.polylines(
            img, [np.round(pts * _SUBPIXEL).astype(np.int32)], False, _random_colour(rng),
            thickness=int(rng.integers(1, 4)), lineType=cv2.LINE_AA, shift=_SUBPIXEL_SHIFT,
        )  # fmt: skip
    for _ in range(rng.integers(0, 3)):  # open arcs
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(8, max(9, w // 3))), int(rng.integers(8, max(9, h // 3))))
        start_angle = float(rng.uniform(0, 360))
        cv2.ellipse(
            img, centre, axes, float(rng.uniform(0, 180)), start_angle, start_angle + float(rng.uniform(40, 200)),
            _random_colour(rng), thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA,
        )  # fmt: skip
    for _ in range(rng.integers(0, 3)):  # grainy, translucent blobs with ragged outlines
        bh, bw = (int(v) for v in rng.integers(16, max(17, min(h, w) // 3), size=2))
        field = _smooth_noise(rng, bh, bw, 1, cells=(4, 8))[..., 0]
        # A radial fall-off keeps the blob inside its patch; the noise makes its outline ragged,
        # and dropping random pixels makes it a texture rather than a solid (circle-like) shape.
        yy, xx = np.mgrid[-1 : 1 : bh * 1j, -1 : 1 : bw * 1j]
        blob = ((1.5 * field - (xx**2 + yy**2)) > -0.4) & (rng.random((bh, bw)) < rng.uniform(0.4, 0.8))
        y0, x0 = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        region = img[y0 : y0 + bh, x0 : x0 + bw]
        alpha = float(rng.uniform(0.3, 0.7))
        region[blob] = (1 - alpha) * region[blob] + alpha * np.asarray(_random_colour(rng), np.float32)


# ----------------------------------------------------------------------------- objects


def _shape_mask(
    rng: np.random.Generator, cls: int, size: float, centre: np.ndarray, h: int, w: int, params: ShapesParams
) -> np.ndarray:
    """Bool[h, w]: the full silhouette of a shape whose circumscribed circle has diameter ``size``."""
    canvas = np.zeros((h, w), np.uint8)
    radius = size / 2
    if SHAPES_CLASSES[cls] == "circle":
        c = tuple(int(v) for v in np.round(centre * _SUBPIXEL))
        cv2.circle(canvas, c, int(round(radius * _SUBPIXEL)), 1, -1, cv2.LINE_8, _SUBPIXEL_SHIFT)
        return canvas.astype(bool)
    if SHAPES_CLASSES[cls] == "rectangle":
        # Corners on the circumscribed circle at ±half_angle around a random rotation: the
        # aspect ratio (short/long side = tan(half_angle)) goes from 0.36 to 1 (a square), and
        # the short side (size * sin(half_angle)) is at least min_rectangle_side.
        lowest = max(np.deg2rad(20), np.arcsin(min(params.min_rectangle_side / size, np.sin(np.pi / 4))))
        half_angle = rng.uniform(lowest, np.pi / 4)
        angles = np.array([half_angle, np.pi - half_angle, np.pi + half_angle, -half_angle])
    else:  # triangle: vertices spread ~120 degrees apart, jittered so triangles are not all equilateral
        angles = np.arange(3) * (2 * np.pi / 3) + rng.uniform(-0.35, 0.35, size=3)
    angles = angles + rng.uniform(0, 2 * np.pi)
    pts = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    cv2.fillPoly(canvas, [np.round(pts * _SUBPIXEL).astype(np.int32)], 1, cv2.LINE_8, _SUBPIXEL_SHIFT)
    return canvas.astype(bool)


def _place(
    rng: np.random.Generator, size: float, h: int, w: int, placed: list[tuple[np.ndarray, float]], cluster_prob: float
) -> np.ndarray:
    """The centre (x, y) of a new object, fully inside the image; often next to an earlier one."""
    lo = np.array([size / 2, size / 2])
    hi = np.array([w - size / 2, h - size / 2])
    if placed and rng.random() < cluster_prob:
        other_centre, other_size = placed[rng.integers(len(placed))]
        offset = rng.uniform(-0.6, 0.6, size=2) * (size + other_size) / 2
        return np.clip(other_centre + offset, lo, hi)
    return rng.uniform(lo, hi)


def _pick_colour(
    rng: np.random.Generator, bg_mean: np.ndarray, neighbours: list[np.ndarray], low_contrast: bool
) -> np.ndarray:
    """A colour for an object: ``low_contrast`` puts it 25-45 away from ``bg_mean`` (RGB distance),
    otherwise at least 70 away. Either way it stays 60 away from the colours of the objects it
    touches, so two touching objects never merge into one silhouette."""
    colour = np.asarray(_random_colour(rng), np.float32)
    for _ in range(30):
        if low_contrast:
            direction = rng.normal(size=3)
            colour = np.clip(bg_mean + direction / np.linalg.norm(direction) * rng.uniform(25, 45), 0, 255)
            ok_bg = np.linalg.norm(colour - bg_mean) >= 20
        else:
            colour = np.asarray(_random_colour(rng), np.float32)
            ok_bg = np.linalg.norm(colour - bg_mean) >= 70
        if ok_bg and all(np.linalg.norm(colour - c) >= 60 for c in neighbours):
            break
    return colour.astype(np.float32)


@dataclass
class _Object:
    cls: int
    full: np.ndarray  # bool[h, w], the whole silhouette
    colour: np.ndarray  # float32[3]
    visible: np.ndarray | None = None  # bool[h, w], set once occlusion is resolved


def _resolve_occlusion(objects: list[_Object], params: ShapesParams) -> list[_Object]:
    """Keep the objects that stay visible enough, and set their ``visible`` masks.

    Walks from the top (last drawn) down: an object's visible part depends only on the kept
    objects above it, so each decision is final and dropping one never hides another.
    """
    h, w = objects[0].full.shape if objects else (0, 0)
    covered = np.zeros((h, w), bool)
    kept = []
    for obj in reversed(objects):
        visible = obj.full & ~covered
        area = int(visible.sum())
        if area < params.min_visible_frac * max(int(obj.full.sum()), 1):
            continue
        ys, xs = np.nonzero(visible)
        if xs.max() - xs.min() + 1 < params.min_visible_side or ys.max() - ys.min() + 1 < params.min_visible_side:
            continue
        obj.visible = visible
        covered |= obj.full
        kept.append(obj)
    return kept[::-1]


def _sample_objects(rng: np.random.Generator, img: np.ndarray, params: ShapesParams) -> list[_Object]:
    """1..max_objects objects for a background ``img`` (float32[h, w, 3]), in drawing order.

    Colours are picked against the background under each object and against the objects it
    may touch.
    """
    h, w = img.shape[:2]
    max_size = params.max_object_frac * min(h, w)
    objects: list[_Object] = []
    placed: list[tuple[np.ndarray, float]] = []  # (centre, size) of each object, in drawing order
    for _ in range(int(rng.integers(1, params.max_objects + 1))):
        # Log-uniform sizes: as many objects between 12 and 24 px as between 80 and 160 px.
        size = float(np.exp(rng.uniform(np.log(params.min_object_size), np.log(max_size))))
        centre = _place(rng, size, h, w, placed, params.cluster_prob)
        cls = int(rng.integers(len(SHAPES_CLASSES)))
        full = _shape_mask(rng, cls, size, centre, h, w, params)
        bg_mean = img[full].mean(axis=0) if full.any() else img.reshape(-1, 3).mean(axis=0)
        neighbours = [
            o.colour for o, (c, s) in zip(objects, placed) if np.abs(c - centre).max() < (s + size) / 2 + 2
        ]
        # Small and faint at once would be a guess, not a detection: only larger objects may be faint.
        low_contrast = size >= 24 and rng.random() < params.low_contrast_prob
        colour = _pick_colour(rng, bg_mean, neighbours, low_contrast)
        objects.append(_Object(cls, full, colour))
        placed.append((centre, size))
    return objects


def _render_image(rng: np.random.Generator, params: ShapesParams) -> tuple[np.ndarray, list[_Object]]:
    """One image: uint8[h, w, 3] and its 1..max_objects objects (bottom to top) with their visible masks."""
    h, w = (int(v) for v in rng.integers(params.min_side, params.max_side + 1, size=2))
    img = _background(rng, h, w)
    _draw_distractors(rng, img)
    objects: list[_Object] = []
    while not objects:  # rarely, every object is too occluded or too thin: draw a new set
        objects = _resolve_occlusion(_sample_objects(rng, img, params), params)

    for obj in objects:
        ys, xs = np.nonzero(obj.visible)
        # A gentle linear shading so objects are not perfectly flat.
        gx, gy = rng.uniform(-0.15, 0.15, size=2)
        shade = (xs - xs.mean()) * gx + (ys - ys.mean()) * gy
        img[ys, xs] = obj.colour + shade[:, None].astype(np.float32)

    img += rng.standard_normal(size=img.shape, dtype=np.float32) * rng.uniform(0, 10)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(0.5, 1.0)))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), objects


# ----------------------------------------------------------------------------- COCO files


def _annotation(obj: _Object, ann_id: int, image_id: int) -> dict:
    """COCO annotation of an object's visible part: RLE mask, its box (XYWH) and its area."""
    rle = mask_util.encode(np.asfortranarray(obj.visible.astype(np.uint8)))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.cls + 1,  # COCO-style 1-based ids, mapped to 0..K-1 on load
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
        "area": float(mask_util.area(rle)),
        "iscrowd": 0,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
    }


def generate_shapes(
    out_dir: str | os.PathLike,
    num_images: int,
    seed: int,
    *,
    split: str = "train",
    params: ShapesParams | None = None,
    show_progress: bool = True,
) -> str:
    """Write ``num_images`` images to ``out_dir/{split}/`` and ``out_dir/instances_{split}.json``.

    Writes in place; :func:`prepare_shapes` wraps this with caching and an atomic rename.

    Args:
        out_dir: folder to write to (created if needed).
        num_images: how many images.
        seed: image ``i`` is drawn from ``np.random.default_rng([seed, i])``.
        split: names the image folder and the json.
        params: generator knobs; defaults to :class:`ShapesParams()`.
        show_progress: show a tqdm bar.

    Returns:
        the path of the json file.
    """
    params = params or ShapesParams()
    out_dir = os.fspath(out_dir)
    image_dir = os.path.join(out_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for i in tqdm(range(num_images), desc=f"Generating shapes/{split}", disable=not show_progress, unit="img"):
        img, objects = _render_image(np.random.default_rng([seed, i]), params)
        file_name = f"{i:06d}.png"
        if not cv2.imwrite(os.path.join(image_dir, file_name), img):
            raise OSError(f"Could not write {os.path.join(image_dir, file_name)}")
        images.append({"id": i + 1, "file_name": file_name, "height": img.shape[0], "width": img.shape[1]})
        annotations.extend(_annotation(o, len(annotations) + 1, i + 1) for o in objects)
    coco = {
        "info": {"description": "rcnnzoo synthetic shapes", "version": _GENERATOR_VERSION, "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPES_CLASSES)],
    }
    json_file = os.path.join(out_dir, f"instances_{split}.json")
    with open(json_file, "w") as f:
        json.dump(coco, f)
    return json_file


def shapes_dirname(split: str, num_images: int, seed: int, params: ShapesParams | None = None) -> str:
    """``shapes/<hash>``: the folder (relative to the datasets root) of one generated split.

    The hash covers the generator version and every parameter, so a changed generator or
    parameter never reuses a stale copy.
    """
    params = params or ShapesParams()
    key = {"version": _GENERATOR_VERSION, "split": split, "num_images": num_images, "seed": seed}
    key.update(dataclasses.asdict(params))
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join("shapes", f"{split}-v{_GENERATOR_VERSION}-{digest}")


def prepare_shapes(
    split: str, num_images: int, seed: int, root: str | os.PathLike | None = None, params: ShapesParams | None = None
) -> tuple[str, str]:
    """Generate a split under ``root`` (default: the datasets root) unless it is already there.

    Generation goes to a temporary folder next to the final one, which is then renamed into
    place: a reader never sees a half-written split, and when several processes race, the first
    rename wins and the others use its copy.

    Returns:
        ``(json_file, image_root)``.
    """
    root = os.fspath(root) if root is not None else get_datasets_root()
    final = os.path.join(root, shapes_dirname(split, num_images, seed, params))
    json_file = os.path.join(final, f"instances_{split}.json")
    image_root = os.path.join(final, split)
    if os.path.isfile(json_file):
        return json_file, image_root
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(final)}-", dir=parent)
    try:
        start = time.perf_counter()
        generate_shapes(tmp, num_images, seed, split=split, params=params)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(json_file):  # not a lost race: a real error
                raise
            logger.info("Another process generated %s first; using its copy", final)
        else:
            logger.info("Generated %d shapes images in %.1fs into %s", num_images, time.perf_counter() - start, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return json_file, image_root


def register_shapes(
    name: str,
    split: str,
    num_images: int,
    seed: int,
    root: str | os.PathLike | None = None,
    params: ShapesParams | None = None,
) -> None:
    """Register a shapes split under ``name``; it is generated (once) on first ``DatasetCatalog.get``.

    Args:
        split: names the image folder and json ("train", "val", ...).
        num_images, seed: see :func:`generate_shapes`.
        root: datasets root; default ``$RCNNZOO_DATASETS`` (read when the data is loaded).
        params: generator knobs (default :class:`ShapesParams()`); each setting is cached apart.

    Metadata: ``thing_classes`` (:data:`SHAPES_CLASSES`), ``evaluator_type="coco"``, ``split``, and
    ``json_file``/``image_root`` (which exist once the dataset has been loaded).
    """
    relative = shapes_dirname(split, num_images, seed, params)
    if root is None:
        json_file, image_root = DatasetPath(f"{relative}/instances_{split}.json"), DatasetPath(f"{relative}/{split}")
    else:
        base = os.path.join(os.fspath(root), relative)
        json_file, image_root = os.path.join(base, f"instances_{split}.json"), os.path.join(base, split)

    def load() -> list[dict]:
        json_path, image_dir = prepare_shapes(split, num_images, seed, root, params)
        return load_coco_json(json_path, image_dir, name)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(SHAPES_CLASSES), evaluator_type="coco", split=split, json_file=json_file, image_root=image_root
    )
