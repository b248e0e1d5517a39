"""Detect objects in a folder of images (or given files); write COCO results json and drawings.

Example::

    python tools/infer.py --config-file Shapes/faster_rcnn_tiny_fpn.py \\
        --weights output/shapes_faster_rcnn_tiny_fpn/model_final.pth \\
        --input photos/ extra.jpg --output infer_out/ --batch-size 4 train.device=cuda

``--input`` takes folders (their .jpg .jpeg .png .bmp files, sorted by name, not recursive),
files, or glob patterns. ``KEY=VALUE`` config overrides come last.

Writes to ``--output``:

* ``detections.json``: COCO results, one entry per detection scoring at least ``--score-thresh``:
  ``{"image_id", "file_name", "category_id", "bbox": [x, y, w, h], "score"}`` (plus
  ``"segmentation"`` as RLE for mask models). ``image_id`` is the image's 0-based position in
  the input list (folders expanded in name order), ``file_name`` its path; ``category_id`` is the dataset's own category id when the checkpoint
  (or the config's test dataset) says which, else the class index.
* ``images.json``: ``{"images": [{"id", "file_name", "height", "width", "drawing"}],
  "categories": [{"id", "name"}], "metadata_source"}``, so the results name their images and
  classes without the dataset.
* unless ``--no-draw``: ``<image stem>.png`` per image with its boxes, class names and scores.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from rcnnzoo.data.mapper import read_image
from rcnnzoo.engine.predictor import Predictor
from rcnnzoo.evaluation.coco_evaluation import instances_to_coco_json
from rcnnzoo.evaluation.file_io import atomic_write_json
from rcnnzoo.tools.train_net import load_config
from rcnnzoo.utils.logger import setup_logger
from rcnnzoo.utils.visualizer import draw_instances, save_image

__all__ = ["main", "run", "build_parser", "list_images", "split_trailing_overrides", "IMAGE_EXTENSIONS"]

logger = logging.getLogger("rcnnzoo.infer")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Images decoded at a time: a few batches, so that same-sized images can share a batch.
_BATCHES_PER_CHUNK = 4
_OVERRIDE = re.compile(r"^\+?[A-Za-z_][\w.\[\]-]*=")


def list_images(inputs: Sequence[str]) -> list[str]:
    """The image files named by ``inputs``: folders (their image files, sorted), files, globs.

    Raises:
        FileNotFoundError: an entry that is no file or folder and matches nothing, or a folder
            without image files.
    """
    paths: list[str] = []
    for entry in inputs:
        entry = os.path.expanduser(entry)
        if os.path.isdir(entry):
            found = sorted(
                os.path.join(entry, name)
                for name in os.listdir(entry)
                if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(entry, name))
            )
            if not found:
                raise FileNotFoundError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {entry}")
            paths.extend(found)
        elif os.path.isfile(entry):
            paths.append(entry)
        else:
            matches = sorted(p for p in glob.glob(entry) if os.path.isfile(p))
            if not matches:
                raise FileNotFoundError(f"No such image file or folder: {entry}")
            paths.extend(matches)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="config path or shipped config name")
    parser.add_argument(
        "--weights", default=None, help="checkpoint to load (default: the config's train.init_checkpoint)"
    )
    parser.add_argument("--input", nargs="+", required=True, help="image folders, files or glob patterns")
    parser.add_argument("--output", required=True, help="folder for detections.json, images.json, drawings")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    parser.add_argument(
        "--score-thresh",
        type=float,
        default=0.5,
        help="keep (write and draw) detections scoring at least this (default 0.5; 0 keeps all the "
        "model returns, e.g. for COCO scoring)",
    )
    parser.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="run the model as built, not optimized for inference (norms folded into convs, channels-last)",
    )
    parser.add_argument("--no-draw", action="store_true", help="write only the json files, no pictures")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY=VALUE, last")
    return parser


def split_trailing_overrides(args: argparse.Namespace) -> None:
    """Move trailing ``KEY=VALUE`` items that ``--input``'s ``nargs="+"`` swallowed into ``args.opts``.

    argparse gives every word after ``--input`` to it, so ``--input dir/ train.device=cpu`` would
    read the override as an image; items that look like overrides and are no existing path go back.
    """
    inputs = list(args.input)
    overrides: list[str] = []
    while inputs and _OVERRIDE.match(inputs[-1]) and not os.path.exists(inputs[-1]):
        overrides.insert(0, inputs.pop())
    if not inputs:
        raise SystemExit("--input needs at least one image folder or file")
    args.input = inputs
    args.opts = overrides + list(args.opts or [])


def _drawing_name(path: str, index: int, used: set[str]) -> str:
    """``<stem>.png``, or ``<stem>_<index>.png`` when another input has the same stem."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"{stem}.png"
    if name in used:
        name = f"{stem}_{index}.png"
    used.add(name)
    return name


def _categories(predictor: Predictor) -> list[dict[str, Any]]:
    names = predictor.thing_classes
    if names is None:
        return []
    return [{"id": int(predictor.dataset_id_of[k]), "name": name} for k, name in enumerate(names)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Predict on every input image and write the outputs (see the module docstring).

    Returns:
        ``{"detections": path, "images": path, "drawings": [paths], "num_detections": int}``.

    Raises:
        FileNotFoundError / OSError: an input is missing or cannot be decoded (the message names it).
    """
    cfg = load_config(args.config_file, args.opts)
    paths = list_images(args.input)
    predictor = Predictor(cfg, weights=args.weights, batch_size=args.batch_size, optimize=args.optimize)
    os.makedirs(args.output, exist_ok=True)
    detections: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    drawings: list[str] = []
    used_names: set[str] = set()
    chunk_size = args.batch_size * _BATCHES_PER_CHUNK
    with tqdm(total=len(paths), desc="infer", unit="img") as bar:
        for start in range(0, len(paths), chunk_size):
            chunk = paths[start : start + chunk_size]
            pictures = [read_image(p, predictor.input_format) for p in chunk]
            for offset, (path, image, output) in enumerate(zip(chunk, pictures, predictor(pictures))):
                index = start + offset
                instances = output["instances"].to("cpu")
                instances = instances[instances.scores >= args.score_thresh]
                for entry in instances_to_coco_json(instances, index, predictor.dataset_id_of):
                    detections.append({"image_id": index, "file_name": path, **entry})
                record = {"id": index, "file_name": path, "height": image.shape[0], "width": image.shape[1]}
                record["drawing"] = None
                if not args.no_draw:
                    record["drawing"] = _drawing_name(path, index, used_names)
                    rgb = image if predictor.input_format == "RGB" else image[:, :, ::-1]
                    out = os.path.join(args.output, record["drawing"])
                    save_image(draw_instances(rgb, instances, predictor.thing_classes), out)
                    drawings.append(out)
                images.append(record)
                bar.update(1)
    det_path = os.path.join(args.output, "detections.json")
    img_path = os.path.join(args.output, "images.json")
    atomic_write_json(detections, det_path)
    atomic_write_json(
        {
            "images": images,
            "categories": _categories(predictor),
            "metadata_source": predictor.metadata_source,
        },
        img_path,
    )
    logger.info(
        f"{len(detections)} detections (score >= {args.score_thresh}) on {len(images)} images -> {det_path}"
    )
    return {
        "detections": det_path,
        "images": img_path,
        "drawings": drawings,
        "num_detections": len(detections),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line and run; returns what :func:`run` returns."""
    args = build_parser().parse_args(argv)
    split_trailing_overrides(args)
    if args.batch_size < 1:
        raise SystemExit(f"infer: --batch-size must be >= 1, got {args.batch_size}")
    setup_logger(name="rcnnzoo")
    return run(args)


if __name__ == "__main__":
    main()
