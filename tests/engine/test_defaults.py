"""default_argument_parser, default_setup, seed_all_rng, cfg_get and DefaultPredictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_toys import L, make_cfg
from torch import nn

from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.engine import DefaultPredictor, cfg_get, default_argument_parser, default_setup, seed_all_rng


def test_argument_parser_defaults_and_trailing_overrides() -> None:
    args = default_argument_parser().parse_args(
        ["--config-file", "cfg.py", "--resume", "--num-gpus", "2", "train.max_iter=5", "optimizer.lr=0.1"]
    )
    assert args.config_file == "cfg.py" and args.resume and not args.eval_only
    assert args.num_gpus == 2 and args.num_machines == 1 and args.machine_rank == 0
    assert args.opts == ["train.max_iter=5", "optimizer.lr=0.1"]
    assert default_argument_parser().parse_args([]).num_gpus == 1


def test_cfg_get_reads_nested_keys_with_defaults() -> None:
    cfg = make_cfg({"train": {"amp": {"enabled": True}, "seed": None}})
    assert cfg_get(cfg, "train.amp.enabled") is True
    assert cfg_get(cfg, "train.checkpointer.period", 5000) == 5000
    assert cfg_get(cfg, "train.seed", 3) is None  # present but None is a value, not a default
    with pytest.raises(KeyError, match="train.max_iter"):
        cfg_get(cfg, "train.max_iter")


def test_seed_all_rng_is_reproducible_and_random_when_negative() -> None:
    seed_all_rng(7)
    a = (torch.rand(3), np.random.rand(), __import__("random").random())
    seed_all_rng(7)
    b = (torch.rand(3), np.random.rand(), __import__("random").random())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert seed_all_rng(-1) >= 0


@pytest.mark.usefixtures("restore_loggers")
def test_default_setup_creates_output_logs_config_and_seeds(tmp_path, fake_lazy) -> None:
    out = tmp_path / "run"
    cfg = make_cfg({"train": {"output_dir": str(out), "seed": 11}})
    args = default_argument_parser().parse_args([])

    default_setup(cfg, args)
    first = torch.rand(4)
    default_setup(cfg, args)  # same seed -> same random stream
    assert torch.equal(first, torch.rand(4))

    assert fake_lazy.lazy_config.saved == [str(out / "config.yaml")] * 2
    assert (out / "config.yaml").exists()
    log = (out / "log.txt").read_text()
    assert f"torch {torch.__version__}" in log and "Using seed 11" in log


class _RecordingDetector(nn.Module):
    """Remembers its inputs; 'detects' the mean pixel value."""

    def __init__(self, input_format: str = "BGR") -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.input_format = input_format
        self.seen: list[dict] = []

    def forward(self, batched_inputs: list[dict]) -> list[dict]:
        self.seen.extend(batched_inputs)
        return [{"instances": d["image"].float().mean() * self.scale} for d in batched_inputs]


class _HalveTransform:
    def apply_image(self, image: np.ndarray) -> np.ndarray:
        return image[::2, ::2]


class _Halve:
    """A test augmentation with the detectron2-style interface: get_transform(image).apply_image."""

    def get_transform(self, image: np.ndarray) -> _HalveTransform:
        return _HalveTransform()


def test_default_predictor_loads_weights_augments_and_runs_one_image(
    tmp_path, fake_lazy, monkeypatch
) -> None:
    trained = _RecordingDetector()
    with torch.no_grad():
        trained.scale.fill_(2.0)
    Checkpointer(trained, str(tmp_path)).save("model_final")
    cfg = make_cfg(
        {
            "model": L(_RecordingDetector, input_format="RGB"),
            "dataloader": {"test": {"mapper": {"augmentations": [L(_Halve)]}}},
            "train": {"init_checkpoint": str(tmp_path / "model_final.pth"), "device": "auto"},
        }
    )

    predictor = DefaultPredictor(cfg)
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    output = predictor(image)

    assert predictor.input_format == "RGB" and not predictor.model.training
    assert predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")  # "auto"
    assert predictor.model.scale.item() == 2.0  # weights from cfg.train.init_checkpoint
    (seen,) = predictor.model.seen
    assert seen["image"].shape == (3, 3, 4) and seen["image"].dtype == torch.uint8  # CHW, halved
    assert (seen["height"], seen["width"]) == (6, 8)  # original size, for rescaling the outputs
    assert torch.equal(seen["image"], torch.as_tensor(image[::2, ::2].transpose(2, 0, 1).copy()))
    assert not output["instances"].requires_grad


def test_default_predictor_rejects_non_hwc_input(fake_lazy) -> None:
    cfg = make_cfg(
        {"model": L(_RecordingDetector), "dataloader": {"test": {"mapper": {"augmentations": []}}}}
    )
    predictor = DefaultPredictor(cfg, weights="")
    with pytest.raises(ValueError, match="HWC"):
        predictor(np.zeros((4, 4), dtype=np.uint8))
