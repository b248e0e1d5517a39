"""The model zoo catalog and its API: names, configs, URLs, and weights fetched from an HTTP server
started on 127.0.0.1 by the test (never the real URLs), converted once and then read from the cache."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from rcnnzoo import model_zoo
from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.config import instantiate
from rcnnzoo.model_zoo import catalog
from rcnnzoo.model_zoo.catalog import CATALOG, UnknownModelError, resolve_weights
from rcnnzoo.model_zoo.converters import (
    DETECTRON2_ARCHS,
    IMAGENET_BACKBONES,
    TORCHVISION_ARCHS,
    convention_mismatches,
    convert_torchvision_state_dict,
)
from rcnnzoo.model_zoo.download import DownloadError
from rcnnzoo.modeling.backbone import ResNet
from rcnnzoo.tools.train_net import load_config

DETECTOR_ARCHS = {"torchvision": TORCHVISION_ARCHS, "detectron2": DETECTRON2_ARCHS}


# ------------------------------------------------------------------------------------- the table
def test_names_are_unique_and_say_their_source():
    assert len(set(model_zoo.list_models())) == len(CATALOG) == 17
    for name, entry in CATALOG.items():
        assert entry.name == name and name.startswith(f"{entry.source}/")
    duplicate = (*catalog._ENTRIES, catalog._ENTRIES[0])
    with pytest.raises(ValueError, match="Two catalog entries"):
        catalog._index(duplicate)
    assert model_zoo.list_models(source="detectron2", kind="detector") == [
        "detectron2/COCO-Detection/faster_rcnn_R_50_FPN_1x",
        "detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x",
        "detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x",
        "detectron2/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x",
    ]


@pytest.mark.parametrize("name", list(CATALOG))
def test_entry_has_a_converter_a_shipped_config_and_the_published_checksum(name):
    entry = CATALOG[name]
    if entry.kind == "detector":  # the converter's own table names the config the weights fit
        assert DETECTOR_ARCHS[entry.source][entry.arch] == entry.config
    else:
        assert IMAGENET_BACKBONES[entry.arch].source == entry.source
    if entry.config is not None:
        assert Path(model_zoo.get_config_file(name)).is_file()
    file = entry.url.rsplit("/", 1)[1]
    if entry.source == "torchvision":  # "<name>-<first 8 hex digits of the sha256>.pth"
        assert entry.url.startswith("https://download.pytorch.org/models/")
        assert file == f"{entry.arch}{'_coco' if 'rcnn_resnet' in entry.arch else ''}-{entry.sha256}.pth"
        assert len(entry.sha256) == 8 and entry.md5 is None
    elif (
        entry.kind == "detector"
    ):  # ".../<config>/<model id>/model_final_<first 6 hex digits of the md5>.pkl"
        assert entry.url.startswith(f"https://dl.fbaipublicfiles.com/detectron2/{entry.config[:-3]}/")
        assert file == f"model_final_{entry.md5}.pkl" and entry.sha256 is None
    else:  # MSRA's ImageNet ResNets: nothing published to check them with
        assert file == f"{entry.arch}.pkl" and entry.sha256 is None and entry.md5 is None
    assert entry.metrics and entry.dataset and entry.reference.startswith("https://")


@pytest.mark.parametrize("name", [n for n, e in CATALOG.items() if e.kind != "detector" and e.config])
def test_backbone_config_takes_the_input_convention_of_its_weights(name):
    entry = CATALOG[name]
    cfg = model_zoo.get_config(name, trained=True)
    assert cfg.train.init_checkpoint == name
    if entry.arch == "vgg16":  # no stride to check, and its 138M parameters take seconds to build
        spec = IMAGENET_BACKBONES["vgg16"]
        assert cfg.model.input_format == spec.input_format
        assert list(cfg.model.pixel_mean) == pytest.approx(spec.pixel_mean)
        assert list(cfg.model.pixel_std) == pytest.approx(spec.pixel_std)
        return
    assert convention_mismatches(instantiate(cfg.model), entry.arch) == []


# ---------------------------------------------------------------------------------------- lookup
def test_get_config_and_checkpoint_url_by_name_and_by_config():
    name = "detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x"
    url = "https://dl.fbaipublicfiles.com/detectron2/COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl"
    assert model_zoo.get_checkpoint_url(name) == url
    # detectron2's own spelling: the config path, with or without .py
    assert model_zoo.get_checkpoint_url("COCO-Detection/faster_rcnn_R_50_FPN_3x.py") == url
    assert (
        model_zoo.get_config("COCO-Detection/faster_rcnn_R_50_FPN_3x", trained=True).train.init_checkpoint
        == name
    )
    assert model_zoo.get_config(name).train.init_checkpoint == ""  # trained=False: the config's own
    cfg = model_zoo.get_config("torchvision/maskrcnn_resnet50_fpn_v2", trained=True)
    assert cfg.train.init_checkpoint == "torchvision/maskrcnn_resnet50_fpn_v2"
    assert cfg.model.roi_heads.mask_head is not None
    assert model_zoo.get_config("Shapes/faster_rcnn_tiny_fpn.py").train.init_checkpoint == ""  # as before


def test_unknown_name_lists_close_names_first_then_all():
    with pytest.raises(UnknownModelError) as info:
        model_zoo.get_checkpoint_url("torchvision/maskrcnn_resnet50_fpn_v3")
    message = str(info.value)
    close = message.index("Did you mean 'torchvision/maskrcnn_resnet50_fpn_v2'")
    assert close < message.index("Available:") < message.index("detectron2/ImageNetPretrained/MSRA/R-101")
    with pytest.raises(KeyError, match="No model 'detectron2/COCO-Detection/nope'"):
        model_zoo.get("detectron2/COCO-Detection/nope")
    with pytest.raises(
        UnknownModelError, match="No published weights .* for config 'Shapes/faster_rcnn_tiny_fpn.py'"
    ):
        model_zoo.get_config("Shapes/faster_rcnn_tiny_fpn.py", trained=True)
    with pytest.raises(ValueError, match="ImageNet weights for a detector's backbone"):
        model_zoo.get("detectron2/ImageNetPretrained/MSRA/R-50")
    with pytest.raises(ValueError, match="no shipped config"):
        model_zoo.get_config("torchvision/resnet18")


def test_train_net_takes_a_zoo_name_as_config_and_resolves_published_urls(monkeypatch):
    cfg = load_config("torchvision/fasterrcnn_mobilenet_v3_large_fpn", ["train.max_iter=3"])
    assert cfg.train.init_checkpoint == "torchvision/fasterrcnn_mobilenet_v3_large_fpn"
    assert cfg.train.max_iter == 3
    # a published URL, or detectron2's detectron2:// spelling of one, is its catalog entry
    seen = []
    monkeypatch.setattr(catalog, "converted_checkpoint", lambda name, **kw: seen.append(name) or "x.pth")
    resolve_weights("https://download.pytorch.org/models/resnet50-0676ba61.pth")
    resolve_weights("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    resolve_weights("torchvision/vgg16")
    assert seen == ["torchvision/resnet50", "detectron2/ImageNetPretrained/MSRA/R-50", "torchvision/vgg16"]
    assert resolve_weights("") == "" and resolve_weights("no/such/file.pth") == "no/such/file.pth"
    with pytest.raises(UnknownModelError):
        Checkpointer(nn.Linear(1, 1)).load("torchvision/resnet5")


# ---------------------------------------------------------------- fetch, convert, cache (local HTTP)
@pytest.fixture()
def server(tmp_path):
    """Serves ``tmp_path / "www"`` on 127.0.0.1; yields (base URL, served dir, list of request paths)."""
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _publish(monkeypatch, server, name: str, state_dict: dict[str, torch.Tensor]) -> str:
    """Serve ``state_dict`` as torchvision would publish it (sha256 prefix in the file name) and point
    catalog entry ``name`` at it. Returns the file's URL."""
    base, root, _ = server
    tmp = root / "upload.pth"
    torch.save(state_dict, tmp)
    prefix = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    file = f"{name.split('/')[-1]}-{prefix}.pth"
    tmp.rename(root / file)
    entry = dataclasses.replace(CATALOG[name], url=f"{base}/{file}", sha256=prefix)
    monkeypatch.setitem(CATALOG, name, entry)
    return entry.url


def test_get_downloads_checks_converts_once_then_uses_the_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RCNNZOO_CACHE", str(tmp_path / "cache"))
    name, arch = "torchvision/fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_fpn"
    torch.manual_seed(0)
    tv = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    tv_state = tv.state_dict()
    url = _publish(monkeypatch, server, name, tv_state)
    _, _, hits = server

    model = model_zoo.get(name)
    assert not model.training
    expected = convert_torchvision_state_dict(tv_state, arch)
    state = model.state_dict()
    assert set(expected) <= set(state)
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    cached = catalog.cached_path_for(url)
    assert os.path.isfile(os.path.splitext(cached)[0] + f".rcnnzoo-c{catalog.CONVERTER_VERSION}.pth")
    assert len(hits) == 1

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(catalog, "_convert", no_conversion)
    again = model_zoo.get(name)
    assert len(hits) == 1  # no request: the converted file is in the cache
    torch.testing.assert_close(again.state_dict(), state, rtol=0, atol=0)


def test_published_checksum_mismatch_converts_and_caches_nothing(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RCNNZOO_CACHE", str(cache))
    name = "torchvision/resnet18"
    _publish(monkeypatch, server, name, {"fc.bias": torch.zeros(3)})
    other = torch.ones(3)
    torch.save({"fc.bias": other}, server[1] / "replaced.pth")
    os.replace(server[1] / "replaced.pth", server[1] / CATALOG[name].url.rsplit("/", 1)[1])
    with pytest.raises(
        DownloadError, match=f"Checksum mismatch for {CATALOG[name].url}: expected sha256 prefix"
    ):
        catalog.converted_checkpoint(name)
    assert not [p for p in cache.rglob("*") if p.is_file()]


class _Detector(nn.Module):
    """Just enough of a detector for placing ResNet-18 weights: FPN-like (``backbone.bottom_up``) or
    C4-like (the ResNet directly at ``backbone``)."""

    def __init__(self, fpn: bool) -> None:
        super().__init__()
        resnet = ResNet(depth=18, out_features=["res5"], freeze_at=0)
        if fpn:
            self.backbone = nn.Module()
            self.backbone.bottom_up = resnet
        else:
            self.backbone = resnet
        self.head = nn.Linear(4, 2)  # not in an ImageNet file: stays as initialised


def test_init_checkpoint_zoo_name_places_imagenet_backbone_where_the_model_has_it(
    server, tmp_path, monkeypatch
):
    monkeypatch.setenv("RCNNZOO_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    tv_state = torchvision.models.resnet18().state_dict()
    _publish(monkeypatch, server, "torchvision/resnet18", tv_state)
    _, _, hits = server
    for fpn, prefix in ((True, "backbone.bottom_up."), (False, "backbone.")):
        model = _Detector(fpn)
        head = model.head.weight.clone()
        report = Checkpointer(model).load("torchvision/resnet18")  # what train_net does with it
        state = model.state_dict()
        torch.testing.assert_close(state[prefix + "layer4.1.conv2.weight"], tv_state["layer4.1.conv2.weight"])
        torch.testing.assert_close(state[prefix + "bn1.running_var"], tv_state["bn1.running_var"])
        assert report.missing_keys == ["head.weight", "head.bias"] and report.unexpected_keys == []
        assert torch.equal(model.head.weight, head)
    assert len(hits) == 1  # one download, converted once, placed for the second layout from the cache


def test_init_checkpoint_url_of_an_rcnnzoo_checkpoint_is_fetched_and_recorded(
    server, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("RCNNZOO_CACHE", str(tmp_path / "cache"))
    base, root, hits = server
    torch.manual_seed(0)
    trained = nn.Linear(3, 2)
    torch.save({"model": trained.state_dict(), "iteration": 99}, root / "model_final.pth")
    url = f"{base}/model_final.pth"
    model = nn.Linear(3, 2)
    with caplog.at_level("WARNING", logger="rcnnzoo.model_zoo.download"):
        report = Checkpointer(model).load(url)
    assert report.iteration == 99 and torch.equal(model.weight, trained.weight)
    assert url in caplog.text  # nothing published to check it with: trusted on first use, said so
    assert os.path.isfile(catalog.cached_path_for(url) + ".sha256")
    Checkpointer(nn.Linear(3, 2)).load(url)
    assert hits == ["/model_final.pth"]
