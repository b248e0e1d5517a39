"""Convert another project's detection checkpoint, once, into an rcnnzoo ``.pth``.

Example::

    python tools/convert_checkpoint.py fasterrcnn_resnet50_fpn_coco-258fb6c6.pth tv_frcnn.pth \\
        --source torchvision --arch fasterrcnn_resnet50_fpn
    python tools/train_net.py --eval-only \\
        --config-file COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py train.init_checkpoint=tv_frcnn.pth

``IN`` may be a local path, a ``file://`` or an ``http(s)://`` URL (fetched into the rcnnzoo
cache, checked against ``--sha256`` when given). It is read with ``torch.load(weights_only=True)``:
tensors and plain containers only, no code runs. The output is written atomically as
``{"model": state_dict, "conversion": {...}}``, which :class:`rcnnzoo.checkpoint.Checkpointer`
loads (also with ``weights_only=True``); before writing, the converted weights are loaded strictly
into the model of the arch's config, so a file that is written is known to fit it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rcnnzoo.checkpoint import CheckpointError, atomic_write
from rcnnzoo.model_zoo.converters import TORCHVISION_ARCHS, convert_torchvision_state_dict
from rcnnzoo.model_zoo.download import download

__all__ = ["build_parser", "convert_checkpoint", "main"]

logger = logging.getLogger("rcnnzoo.convert_checkpoint")


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The weights in ``path``: a bare state dict (torchvision's published files) or ``{"model": ...}``
    (torchvision's reference training scripts)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of every kind: name the file
        raise CheckpointError(f"Cannot read {path} as a weights-only checkpoint: {e}") from e
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(data)


def _check_fits(state_dict: dict[str, torch.Tensor], arch: str) -> None:
    """Load ``state_dict`` strictly into the model of ``arch``'s config; raise if any key or shape differs."""
    from rcnnzoo.config import instantiate
    from rcnnzoo.model_zoo import get_config

    model = instantiate(get_config(TORCHVISION_ARCHS[arch]).model)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"The converted weights do not fit {TORCHVISION_ARCHS[arch]}: {e}") from e


def convert_checkpoint(
    src: str, dst: str, *, source: str, arch: str, sha256: str | None = None, verify: bool = True
) -> dict[str, Any]:
    """Convert ``src`` (path or URL) to an rcnnzoo checkpoint at ``dst``.

    Returns:
        the ``"conversion"`` record written with the weights (source, arch, config, input).
    Raises:
        ConversionError: keys the converter does not know; CheckpointError: unreadable input or
        weights that do not fit the config's model; DownloadError: a URL that cannot be fetched.
    """
    if source != "torchvision":
        raise ValueError(f"--source {source!r} is not supported yet; supported: torchvision")
    local = download(src, sha256)
    converted = convert_torchvision_state_dict(_read_state_dict(local), arch)
    if verify:
        _check_fits(converted, arch)
    record = {"source": source, "arch": arch, "config": TORCHVISION_ARCHS[arch], "input": src}
    atomic_write(dst, lambda f: torch.save({"model": converted, "conversion": record}, f))
    logger.info("Wrote %d tensors for %s to %s", len(converted), record["config"], dst)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", metavar="IN", help="checkpoint path, file:// or http(s):// URL")
    parser.add_argument("output", metavar="OUT", help="the rcnnzoo .pth to write")
    parser.add_argument("--source", choices=("torchvision",), required=True, help="the checkpoint's project")
    parser.add_argument(
        "--arch",
        choices=sorted(TORCHVISION_ARCHS),
        required=True,
        help="the torchvision builder name of the model",
    )
    parser.add_argument("--sha256", default=None, help="expected sha256 of IN")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip building the config's model to check that the weights fit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    return convert_checkpoint(
        args.input,
        args.output,
        source=args.source,
        arch=args.arch,
        sha256=args.sha256,
        verify=not args.no_verify,
    )


if __name__ == "__main__":
    main()
