"""Draw a model's detections on images.

Example::

    python tools/demo.py --config-file Shapes/faster_rcnn_tiny_fpn.py \\
        --weights output/shapes_faster_rcnn_tiny_fpn/model_final.pth \\
        --input photo1.jpg 'more/*.png' --output demo_out/

Each input image is written to ``--output`` as ``<name>.png`` with its detections (boxes,
class names, scores, and masks when the model has them). Class names come from the checkpoint
(saved there by training), else from the config's test dataset metadata, else class indices are
drawn. For COCO results json over a whole folder, see ``tools/infer.py``.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
from collections.abc import Sequence

from tqdm import tqdm

from rcnnzoo.data.mapper import read_image
from rcnnzoo.engine.predictor import Predictor
from rcnnzoo.tools.infer import split_trailing_overrides
from rcnnzoo.tools.train_net import load_config
from rcnnzoo.utils.logger import setup_logger
from rcnnzoo.utils.visualizer import draw_instances, save_image

__all__ = ["main"]

logger = logging.getLogger("rcnnzoo.demo")


def _expand(patterns: Sequence[str]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise FileNotFoundError(f"No image matches {pattern!r}")
        paths.extend(matches)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config path or shipped config name")
    parser.add_argument(
        "--weights", default=None, help="checkpoint to load (default: the config's train.init_checkpoint)"
    )
    parser.add_argument("--input", nargs="+", required=True, help="image files or glob patterns")
    parser.add_argument("--output", required=True, help="folder for the drawings")
    parser.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="run the model as built, not optimized for inference (norms folded into convs, channels-last)",
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="draw detections above this")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY=VALUE")
    return parser


def main(argv: Sequence[str] | None = None) -> list[str]:
    """Run the demo; returns the paths of the drawings written."""
    args = build_parser().parse_args(argv)
    split_trailing_overrides(args)
    setup_logger(name="rcnnzoo")
    cfg = load_config(args.config_file, args.opts)
    paths = _expand(args.input)
    predictor = Predictor(cfg, weights=args.weights, optimize=args.optimize)
    class_names = predictor.thing_classes
    written = []
    for path in tqdm(paths, desc="demo"):
        image = read_image(path, predictor.input_format)
        instances = predictor(image)["instances"].to("cpu")
        rgb = image if predictor.input_format == "RGB" else image[:, :, ::-1]
        drawing = draw_instances(rgb, instances, class_names, score_threshold=args.confidence_threshold)
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
        save_image(drawing, out)
        kept = int((instances.scores >= args.confidence_threshold).sum())
        logger.info(f"{path}: {kept} detections above {args.confidence_threshold} -> {out}")
        written.append(out)
    return written


if __name__ == "__main__":
    main()
