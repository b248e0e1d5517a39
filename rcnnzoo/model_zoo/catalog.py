"""The model zoo's catalog: other projects' published weights by name, fetched, converted and cached.

Each :class:`ZooEntry` says where a file is (``url``), what its publisher gives to check it
(``sha256`` / ``md5``, often only a prefix, see :mod:`.download`), which converter reads it
(``source`` + ``arch``, the arguments of ``tools/convert_checkpoint.py``), which shipped config
takes it, and the publisher's own figures with the page that gives them. Names are
``<source>/<the source's name>``: ``torchvision/<builder name>``, ``detectron2/<config path>``.

:func:`converted_checkpoint` turns a name into an rcnnzoo checkpoint on disk: the download goes
into the rcnnzoo cache (``$RCNNZOO_CACHE``), the conversion is written atomically beside it as
``<download without extension>.rcnnzoo-c<CONVERTER_VERSION>.pth``, and later calls find that file and neither
download nor convert again. :func:`resolve_weights` does this for any ``train.init_checkpoint``
value (a zoo name, a catalog URL, another URL, a path); :class:`rcnnzoo.checkpoint.Checkpointer`
calls it. The converters are looked up when a file is converted, not when this module is
imported, so the catalog may name archs of converters that a given install lacks: those entries
fail on use with the converter's list of the archs it has.

Example::

    from rcnnzoo.model_zoo.catalog import get_entry, converted_checkpoint

    get_entry("torchvision/maskrcnn_resnet50_fpn").metrics  # {"bbox/AP": 37.9, "segm/AP": 34.6}
    path = converted_checkpoint("detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x")
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from rcnnzoo.utils.registry import did_you_mean

from .download import cached_path_for, download

__all__ = [
    "CATALOG",
    "CONVERTED_SUFFIX",
    "CONVERTER_VERSION",
    "SOURCES",
    "UnknownModelError",
    "ZooEntry",
    "converted_checkpoint",
    "entry_for_config",
    "fetch",
    "get_entry",
    "is_zoo_name",
    "list_models",
    "looks_like_zoo_name",
    "resolve_weights",
]

logger = logging.getLogger(__name__)

SOURCES = ("torchvision", "detectron2")
"""The projects whose weights the catalog lists; a zoo name starts with ``<source>/``."""

CONVERTER_VERSION = 1
"""Raised whenever a converter's output changes (renamed keys, new layout): the converted file's
name carries it, so caches written by an older rcnnzoo are converted again, never reused."""

CONVERTED_SUFFIX = f".rcnnzoo-c{CONVERTER_VERSION}.pth"
"""A converted file is the download's path with this in place of its extension."""


@dataclass(frozen=True, eq=False)
class ZooEntry:
    """One published set of weights.

    Attributes:
        name: ``<source>/<the source's name>``, e.g. ``"torchvision/maskrcnn_resnet50_fpn_v2"``.
        kind: ``"detector"`` (a whole trained model) or ``"imagenet_backbone"`` (a classification
            network whose layers initialise a detector's backbone).
        source: the project that publishes the file and whose converter reads it.
        arch: the converter's name for the architecture (``convert_checkpoint.py --arch``).
        config: the shipped config (relative to ``configs/``) whose model takes the weights; for a
            backbone, a shipped config trained from it in its input convention (``None`` if none is).
        url: where the source publishes the file.
        sha256, md5: the checksum the source publishes, in full or (all that torchvision and
            detectron2 give) a prefix of it in the file name; both ``None`` when nothing is
            published (then the first download is trusted and recorded).
        metrics: the source's published figures, in percent as it states them (COCO: ``bbox/AP``,
            ``segm/AP``; ImageNet: top-1/top-5 accuracy or error). None were measured here.
        dataset: the split ``metrics`` are on.
        reference: the page that publishes ``url`` and ``metrics``.
        note: anything a user must know (which of several published versions this is, ...).
    """

    name: str
    kind: str
    source: str
    arch: str
    config: str | None
    url: str
    sha256: str | None = None
    md5: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    dataset: str = ""
    reference: str = ""
    note: str = ""


# ---------------------------------------------------------------------------------------- entries
# torchvision: URLs and `_metrics` of the weights enums (torchvision 0.29.1,
# torchvision/models/detection/{faster_rcnn,mask_rcnn}.py and models/{resnet,vgg,mobilenetv3}.py);
# the 8 hex digits in each file name are the start of its sha256, which torchvision itself checks.
_TV_DOCS = "https://docs.pytorch.org/vision/stable/models/generated/torchvision.models."
_TV_MODELS = "https://download.pytorch.org/models/"


def _tv_detector(builder: str, file: str, config: str, metrics: dict[str, float], enum: str) -> ZooEntry:
    return ZooEntry(
        name=f"torchvision/{builder}",
        kind="detector",
        source="torchvision",
        arch=builder,
        config=config,
        url=_TV_MODELS + file,
        sha256=file.rsplit("-", 1)[1].split(".")[0],
        metrics=metrics,
        dataset="COCO val2017",
        reference=f"{_TV_DOCS}detection.{builder}.html",
        note=f"torchvision's {enum}.COCO_V1",
    )


def _tv_imagenet(
    builder: str, file: str, config: str | None, acc1: float, acc5: float, enum: str
) -> ZooEntry:
    return ZooEntry(
        name=f"torchvision/{builder}",
        kind="imagenet_backbone",
        source="torchvision",
        arch=builder,
        config=config,
        url=_TV_MODELS + file,
        sha256=file.rsplit("-", 1)[1].split(".")[0],
        metrics={"acc@1": acc1, "acc@5": acc5},
        dataset="ImageNet-1k val, single crop",
        reference=f"{_TV_DOCS}{builder}.html",
        note=f"torchvision's {enum}.IMAGENET1K_V1 (the version its detection models start from)",
    )


# detectron2: MODEL_ZOO.md of facebookresearch/detectron2 ("To check downloaded file integrity, any
# model on this page contains its md5 prefix in its file name": model_final_<6 hex digits of md5>).
_D2_FILES = "https://dl.fbaipublicfiles.com/detectron2/"
_D2_ZOO = "https://github.com/facebookresearch/detectron2/blob/main/MODEL_ZOO.md"


def _d2_detector(
    config_path: str, model_id: int, md5: str, metrics: dict[str, float], anchor: str
) -> ZooEntry:
    return ZooEntry(
        name=f"detectron2/{config_path}",
        kind="detector",
        source="detectron2",
        arch=config_path.split("/")[-1],
        config=f"{config_path}.py",
        url=f"{_D2_FILES}{config_path}/{model_id}/model_final_{md5}.pkl",
        md5=md5,
        metrics=metrics,
        dataset="COCO val2017",
        reference=f"{_D2_ZOO}#{anchor}",
        note=f"detectron2 model id {model_id}",
    )


def _d2_msra(name: str, config: str | None, top1_err: float, top5_err: float) -> ZooEntry:
    return ZooEntry(
        name=f"detectron2/ImageNetPretrained/MSRA/{name}",
        kind="imagenet_backbone",
        source="detectron2",
        arch=name,
        config=config,
        url=f"{_D2_FILES}ImageNetPretrained/MSRA/{name}.pkl",
        metrics={"top1_err": top1_err, "top5_err": top5_err},
        dataset="ImageNet-1k val, single 224 crop (MSRA's figures for its Caffe model)",
        reference="https://github.com/KaimingHe/deep-residual-networks#results",
        note=(
            f"detectron2's copy of MSRA's Caffe {name} ({_D2_ZOO}#imagenet-pretrained-models); "
            "no checksum is published for it"
        ),
    )


_DET = "coco-object-detection-baselines"
_SEG = "coco-instance-segmentation-baselines-with-mask-r-cnn"

_ENTRIES: tuple[ZooEntry, ...] = (
    _tv_detector(
        "fasterrcnn_resnet50_fpn",
        "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
        "COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py",
        {"bbox/AP": 37.0},
        "FasterRCNN_ResNet50_FPN_Weights",
    ),
    _tv_detector(
        "fasterrcnn_resnet50_fpn_v2",
        "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
        "COCO-Detection/torchvision/fasterrcnn_resnet50_fpn_v2.py",
        {"bbox/AP": 46.7},
        "FasterRCNN_ResNet50_FPN_V2_Weights",
    ),
    _tv_detector(
        "fasterrcnn_mobilenet_v3_large_fpn",
        "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
        "COCO-Detection/torchvision/fasterrcnn_mobilenet_v3_large_fpn.py",
        {"bbox/AP": 32.8},
        "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    ),
    _tv_detector(
        "maskrcnn_resnet50_fpn",
        "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        "COCO-InstanceSegmentation/torchvision/maskrcnn_resnet50_fpn.py",
        {"bbox/AP": 37.9, "segm/AP": 34.6},
        "MaskRCNN_ResNet50_FPN_Weights",
    ),
    _tv_detector(
        "maskrcnn_resnet50_fpn_v2",
        "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
        "COCO-InstanceSegmentation/torchvision/maskrcnn_resnet50_fpn_v2.py",
        {"bbox/AP": 47.4, "segm/AP": 41.8},
        "MaskRCNN_ResNet50_FPN_V2_Weights",
    ),
    _d2_detector("COCO-Detection/faster_rcnn_R_50_FPN_1x", 137257794, "b275ba", {"bbox/AP": 37.9}, _DET),
    _d2_detector("COCO-Detection/faster_rcnn_R_50_FPN_3x", 137849458, "280758", {"bbox/AP": 40.2}, _DET),
    _d2_detector(
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x",
        137260431,
        "a54504",
        {"bbox/AP": 38.6, "segm/AP": 35.2},
        _SEG,
    ),
    _d2_detector(
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x",
        137849600,
        "f10217",
        {"bbox/AP": 41.0, "segm/AP": 37.2},
        _SEG,
    ),
    _tv_imagenet("resnet18", "resnet18-f37072fd.pth", None, 69.758, 89.078, "ResNet18_Weights"),
    _tv_imagenet("resnet34", "resnet34-b627a593.pth", None, 73.314, 91.420, "ResNet34_Weights"),
    _tv_imagenet(
        "resnet50",
        "resnet50-0676ba61.pth",
        "COCO-Detection/torchvision/fasterrcnn_resnet50_fpn.py",
        76.130,
        92.862,
        "ResNet50_Weights",
    ),
    _tv_imagenet("resnet101", "resnet101-63fe2227.pth", None, 77.374, 93.546, "ResNet101_Weights"),
    _tv_imagenet(
        "vgg16",
        "vgg16-397923af.pth",
        "PascalVOC-Detection/faster_rcnn_vgg16.py",
        71.592,
        90.382,
        "VGG16_Weights",
    ),
    _tv_imagenet(
        "mobilenet_v3_large",
        "mobilenet_v3_large-8738ca79.pth",
        "COCO-Detection/torchvision/fasterrcnn_mobilenet_v3_large_fpn.py",
        74.042,
        91.340,
        "MobileNet_V3_Large_Weights",
    ),
    _d2_msra("R-50", "COCO-Detection/faster_rcnn_R_50_FPN_1x.py", 24.7, 7.8),
    _d2_msra("R-101", None, 23.6, 7.1),
)


def _index(entries: tuple[ZooEntry, ...]) -> dict[str, ZooEntry]:
    index: dict[str, ZooEntry] = {}
    for entry in entries:
        if entry.name in index:
            raise ValueError(f"Two catalog entries are named {entry.name!r}")
        if entry.source not in SOURCES or not entry.name.startswith(entry.source + "/"):
            raise ValueError(f"Catalog entry {entry.name!r}: source {entry.source!r} does not match its name")
        index[entry.name] = entry
    return index


CATALOG: dict[str, ZooEntry] = _index(_ENTRIES)
"""Every zoo name -> its :class:`ZooEntry`, in the order of MODEL_ZOO.md."""


# ----------------------------------------------------------------------------------------- lookup
class UnknownModelError(KeyError):
    """A name that is not in the catalog; the message gives close names first, then all of them."""

    def __str__(self) -> str:  # KeyError would show the message quoted, as a key
        return str(self.args[0])


def list_models(source: str | None = None, kind: str | None = None) -> list[str]:
    """The zoo names, optionally of one ``source`` (``"torchvision"``, ``"detectron2"``) or ``kind``
    (``"detector"``, ``"imagenet_backbone"``)."""
    return [
        name
        for name, entry in CATALOG.items()
        if (source is None or entry.source == source) and (kind is None or entry.kind == kind)
    ]


def is_zoo_name(name: Any) -> bool:
    """Whether ``name`` is a string that names a catalog entry."""
    return isinstance(name, str) and name in CATALOG


def looks_like_zoo_name(name: Any) -> bool:
    """Whether ``name`` starts like a zoo name (``torchvision/``, ``detectron2/``), listed or not."""
    return isinstance(name, str) and name.split("/", 1)[0] in SOURCES and "/" in name


def get_entry(name: str) -> ZooEntry:
    """The catalog entry ``name``.

    Raises:
        UnknownModelError: no such entry; the message suggests close names and lists all.
    """
    entry = CATALOG.get(name)
    if entry is None:
        raise UnknownModelError(
            f"No model {name!r} in the rcnnzoo model zoo.{did_you_mean(name, list(CATALOG))} "
            f"Available: {', '.join(CATALOG)}"
        )
    return entry


def entry_for_config(config: str) -> ZooEntry:
    """The detector entry whose weights fit shipped config ``config`` (``".py"`` optional), as
    detectron2's ``model_zoo.get_checkpoint_url(config_path)`` looks weights up by config.

    Raises:
        UnknownModelError: no detector in the catalog was trained with that config.
    """
    wanted = config.removeprefix("configs/")
    wanted = wanted if wanted.endswith(".py") else wanted + ".py"
    for entry in CATALOG.values():
        if entry.kind == "detector" and entry.config == wanted:
            return entry
    trained = [e.config for e in CATALOG.values() if e.kind == "detector" and e.config]
    raise UnknownModelError(
        f"No published weights in the model zoo for config {config!r}.{did_you_mean(wanted, trained)} "
        f"Configs with weights: {', '.join(trained)}"
    )


# ------------------------------------------------------------------------------ fetch and convert
def fetch(entry: ZooEntry | str, *, cache_dir: str | None = None, progress: bool = True) -> str:
    """The downloaded file of ``entry`` as the source publishes it, checked against what it publishes
    (a sha256 or md5 prefix), or recorded at the first download where it publishes nothing."""
    entry = get_entry(entry) if isinstance(entry, str) else entry
    return download(
        entry.url,
        entry.sha256,
        md5=entry.md5,
        record_digest=True,
        cache_dir=cache_dir,
        progress=progress,
    )


def _converted_path(entry: ZooEntry, cache_dir: str | None) -> str:
    return os.path.splitext(cached_path_for(entry.url, cache_dir))[0] + CONVERTED_SUFFIX


def _convert(entry: ZooEntry, src: str, dst: str) -> dict[str, Any]:
    """``tools/convert_checkpoint.py --source entry.source --arch entry.arch``, imported now: the
    converters are resolved at call time, so an arch that a converter adds later needs no change here."""
    from rcnnzoo.tools.convert_checkpoint import convert_checkpoint

    config = entry.config if entry.kind == "detector" else None  # backbones: the shipped layout
    return convert_checkpoint(src, dst, source=entry.source, arch=entry.arch, config=config)


def converted_checkpoint(
    name: str,
    *,
    model: nn.Module | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
) -> str:
    """An rcnnzoo checkpoint (``{"model": state_dict, "conversion": ...}``) of zoo entry ``name``.

    Downloaded and converted on the first call; later calls return the cached conversion without
    touching the network.

    Args:
        model: for an ImageNet backbone, the model it is for: its backbone is placed where that
            model has it (a C4 model's res5 is in its box head) and a warning lists the input
            settings (channel order, pixel mean/std, ResNet stride) in which the model differs
            from the network's training. ``None``: the shipped configs' layout. Ignored for detectors.
        cache_dir: default ``$RCNNZOO_CACHE`` (:func:`rcnnzoo.model_zoo.download.cache_dir_default`).
    Raises:
        UnknownModelError, DownloadError, and the converter's errors (ValueError for an arch it does
        not have, ConversionError, CheckpointError).
    """
    entry = get_entry(name)
    dst = _converted_path(entry, cache_dir)
    if not os.path.isfile(dst):
        src = fetch(entry, cache_dir=cache_dir, progress=progress)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        logger.info("Converting %s (%s %s) to %s", entry.name, entry.source, entry.arch, dst)
        _convert(entry, src, dst)
    if entry.kind == "imagenet_backbone" and model is not None:
        return _placed_for(entry, dst, model)
    return dst


def _placed_for(entry: ZooEntry, converted: str, model: nn.Module) -> str:
    """``converted`` (a backbone in the shipped layout) re-placed for ``model`` when the model keeps
    its backbone elsewhere; the re-placed file is cached beside it, named by its placement."""
    import torch

    from rcnnzoo.checkpoint import atomic_write
    from rcnnzoo.model_zoo.converters.imagenet import convention_mismatches, place_backbone_weights

    for problem in convention_mismatches(model, entry.arch):
        logger.warning(
            "%s was trained with other input settings than this model's; set %s", entry.name, problem
        )
    data = torch.load(converted, map_location="cpu", weights_only=True)
    shipped = data["conversion"]["placement"]  # backbone key prefix -> model key prefix
    backbone = {}
    for key, value in data["model"].items():
        prefix = max((p for p in shipped.values() if key.startswith(p)), key=len)
        backbone[next(b for b, p in shipped.items() if p == prefix) + key[len(prefix) :]] = value
    placed = place_backbone_weights(backbone, entry.arch, model)
    if placed.prefixes == shipped:
        return converted
    # named by what it holds: where the weights go and which of them the model has
    layout = repr((sorted(placed.prefixes.items()), sorted(placed.state_dict)))
    dst = converted[: -len(CONVERTED_SUFFIX)] + f".placed-{_short_hash(layout)}{CONVERTED_SUFFIX}"
    if not os.path.isfile(dst):
        record = {
            **data["conversion"],
            "placement": placed.prefixes,
            "not_placed": [key for key, _ in placed.not_placed],
        }
        atomic_write(dst, lambda f: torch.save({"model": placed.state_dict, "conversion": record}, f))
    return dst


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


_BY_URL = {entry.url: entry for entry in CATALOG.values()}
_D2_SCHEME = "detectron2://"  # detectron2's own shorthand for its file server, as in its configs


def resolve_weights(path: str, *, model: nn.Module | None = None, cache_dir: str | None = None) -> str:
    """A value of ``train.init_checkpoint`` / ``--init-from`` / ``--weights`` as a local file to load.

    * ``""`` and existing files: unchanged.
    * a zoo name (``torchvision/fasterrcnn_resnet50_fpn``), or the URL of a catalog entry (also
      as detectron2 writes it, ``detectron2://ImageNetPretrained/MSRA/R-50.pkl``):
      :func:`converted_checkpoint` (downloaded, checked, converted once, cached).
    * another ``http(s)://`` URL: downloaded into the cache (an rcnnzoo checkpoint is expected);
      its sha256 is recorded at the first download and checked on later uses.
    * ``file://`` URLs: the file they name. Anything else: unchanged (the caller reports it missing).

    Args:
        model: the model the weights are loaded into (places an ImageNet backbone, see
            :func:`converted_checkpoint`).
    Raises:
        UnknownModelError: a name that starts like a zoo name (``torchvision/...``,
            ``detectron2/...``) but is neither in the catalog nor an existing file.
    """
    if not path or os.path.isfile(path):
        return path
    url = _D2_FILES + path[len(_D2_SCHEME) :] if path.startswith(_D2_SCHEME) else path
    if path in CATALOG or url in _BY_URL:
        name = path if path in CATALOG else _BY_URL[url].name
        return converted_checkpoint(name, model=model, cache_dir=cache_dir)
    if looks_like_zoo_name(path):
        get_entry(path)  # raises, listing the names
    if url.split("://", 1)[0] in ("http", "https", "file"):
        return download(url, record_digest=True, cache_dir=cache_dir)
    return path
