"""Check the datasets of a config before training on them: files, boxes, classes, anchor coverage.

Examples::

    python tools/check_dataset.py --config-file my_project/faster_rcnn.py
    python tools/check_dataset.py --config-file COCO-Detection/faster_rcnn_R_50_FPN_1x.py \\
        --split both --json output/coco_check.json
    python tools/check_dataset.py --config-file my_config.py dataloader.train.dataset.names=my_train

``--config-file`` takes a path or the name of a shipped config (relative to ``configs/``).
Overrides come last as ``KEY=VALUE``, as for ``tools/train_net.py``.

For each dataset of the split it prints the number of images, instances per class, images without
objects, missing or unreadable image files, bad boxes (empty, outside the image, XYXY/XYWH mix-up),
unknown category ids, a ``num_classes`` that disagrees with the dataset, and the share of boxes an
anchor covers (IoU >= 0.5 at the training scale) by COCO size. Exit status 1 when a dataset has
errors, 0 otherwise (warnings allowed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence

from rcnnzoo.data.checks import READ_IMAGE_MODES, check_datasets
from rcnnzoo.tools.train_net import load_config
from rcnnzoo.utils.logger import setup_logger

__all__ = ["main", "build_parser"]

logger = logging.getLogger("rcnnzoo.check_dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Check a config's datasets before training.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="path to a lazy config (.py/.yaml)"
    )
    parser.add_argument(
        "--split", choices=("train", "test", "both"), default="train", help="which dataloader's datasets"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the reports as JSON to this file")
    parser.add_argument(
        "--read-images",
        choices=READ_IMAGE_MODES,
        default="auto",
        help="'all' decodes every image, 'exists' only checks the files exist, "
        "'auto' decodes when a dataset has at most 2000 images, 'none' skips the image files",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY=VALUE, at the end"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the reports of the config's datasets.

    Returns:
        1 when a dataset has errors (or the split names none), else 0; the process exit status.
    """
    args = build_parser().parse_args(argv)
    setup_logger(name="rcnnzoo")
    cfg = load_config(args.config_file, args.opts)
    reports = check_datasets(cfg, split=args.split, read_images=args.read_images, progress=True)
    for report in reports:
        print(report.format() + "\n")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([r.to_dict() for r in reports], f, indent=2)
    if not reports:
        print(f"No dataset names found at dataloader.<split>.dataset.names for --split {args.split}")
        return 1
    bad = [r.label for r in reports if not r.ok]
    print(
        f"{len(bad)} of {len(reports)} datasets have errors: {', '.join(bad)}" if bad else "All datasets OK."
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
