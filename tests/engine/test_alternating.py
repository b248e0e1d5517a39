"""Faster R-CNN's 4-step alternating training (rcnnzoo.engine.stages) from the shipped Shapes config.

The fast tests run ``configs/Shapes/faster_rcnn_tiny_fpn_alternating.py`` through
``tools/train_net.py`` with 32 iterations in all (6 / 13 / 7 / 6 per step), 2 images per batch
and no evaluation: a few seconds per run on one core.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from engine_toys import captured_log

from rcnnzoo.config import LazyConfig, configs_root, instantiate
from rcnnzoo.engine.stages import STATE_FILE, parse_stages, read_completed, stage_iterations
from rcnnzoo.tools import train_net

CONFIG = "Shapes/faster_rcnn_tiny_fpn_alternating.py"
STEPS = ["1_rpn", "2_fast_rcnn", "3_rpn_shared", "4_fast_rcnn_shared"]
FAST = [
    "train.max_iter=32",
    # the paper's proportions, so that every step has several iterations (the config's: 15/65/10/10 %)
    "train.stages.0.share=0.2",
    "train.stages.1.share=0.4",
    "train.stages.2.share=0.2",
    "train.stages.3.share=0.2",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.evaluator=None",
    "+train.check_data=False",
    "train.checkpointer.period=2",
    "train.log_period=100",
]
# Joint training of the same model for the alternating config's 2400 iterations
# (Shapes/faster_rcnn_tiny_fpn.py train.max_iter=2400): shapes-val bbox AP50, measured.
JOINT_AP50 = 0.933


@contextmanager
def _restored_loggers() -> Iterator[None]:
    """train_net sets up the 'rcnnzoo' loggers (handlers, propagate=False); undo it for other tests."""
    names = ("rcnnzoo", "fvcore")
    before = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names}
    try:
        yield
    finally:
        for n, (handlers, propagate) in before.items():
            log = logging.getLogger(n)
            for h in log.handlers:
                if h not in handlers:
                    log.removeHandler(h)
                    h.close()
            log.propagate = propagate


def _train(output_dir: str, *overrides: str, resume: bool = False) -> list[str]:
    """Run tools/train_net.py in this process; return the messages it logged."""
    flags = [f"--config-file={CONFIG}"] + (["--resume"] if resume else [])
    with _restored_loggers(), captured_log("rcnnzoo") as messages:
        train_net.main([*flags, *FAST, *overrides, f"train.output_dir={output_dir}"])
    return messages


def _weights(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _final(output_dir: str, step: str) -> dict[str, torch.Tensor]:
    return _weights(os.path.join(output_dir, step, "model_final.pth"))


def _parameter_names() -> list[str]:
    model = instantiate(LazyConfig.load(configs_root() / CONFIG).model)
    return [n for n, _ in model.named_parameters()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> str:
    """The output folder of one uninterrupted alternating training."""
    out = str(tmp_path_factory.mktemp("alternating"))
    _train(out)
    return out


# ----------------------------------------------------------------------------------- the schedule


def test_shares_round_to_exactly_the_total():
    specs = [{"share": s} for s in (0.2, 0.4, 0.2, 0.2)]
    assert stage_iterations(specs, 32) == [6, 13, 7, 6]
    assert stage_iterations(specs, 1200) == [240, 480, 240, 240]
    assert stage_iterations([{"max_iter": 5}, {"share": 0.5}], 10) == [5, 5]
    with pytest.raises(ValueError, match="exactly one of 'share' or 'max_iter'"):
        stage_iterations([{"share": 0.5, "max_iter": 3}], 10)
    with pytest.raises(ValueError, match="fewer than 1 iteration"):
        stage_iterations([{"share": 0.01}], 10)


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"name": "a", "max_iter": 1, "proposal_from": "x"}], "Did you mean 'proposals_from'"),
        ([{"name": "a", "max_iter": 1}, {"name": "a", "max_iter": 1}], "used twice"),
        ([{"name": "a/b", "max_iter": 1}], "folder name"),
        (
            [{"name": "a", "max_iter": 1, "proposals_from": "b"}, {"name": "b", "max_iter": 1}],
            "earlier stage",
        ),
        ([{"name": "a", "max_iter": 1, "train_mode": "roi"}], "train_mode must be one of"),
        ([{"name": "a", "max_iter": 1, "init_from": "previous"}], "no previous stage"),
        (
            [{"name": "a", "max_iter": 1}, {"name": "b", "max_iter": 1, "init_from": "b"}],
            "does not come earlier",
        ),
        ([{"name": "a", "max_iter": 1, "init_from": "nowhere.pth"}], "nor an existing file"),
    ],
)
def test_bad_schedules_are_refused_before_training(stages, message):
    cfg = LazyConfig.load(configs_root() / CONFIG)
    cfg.train.stages = stages
    with pytest.raises(ValueError, match=message):
        parse_stages(cfg)


# ----------------------------------------------------------------------------------- one run


def test_each_step_trains_what_the_paper_says_and_the_steps_chain(full_run):
    s1, s2, s3, s4 = (_final(full_run, step) for step in STEPS)
    params = _parameter_names()

    def same(a, b, prefix):
        keys = [k for k in a if k.startswith(prefix)]
        assert keys, prefix
        return all(torch.equal(a[k], b[k]) for k in keys)

    def all_changed(a, b, prefix):
        keys = [k for k in params if k.startswith(prefix)]
        return all(not torch.equal(a[k], b[k]) for k in keys)

    # Step 2: a detector with its own backbone; the RPN it carries is step 1's, unchanged.
    assert same(s1, s2, "proposal_generator.")
    assert all_changed(s1, s2, "backbone.")
    # Step 3 starts from step 2's model: the shared layers (and the unused RoI heads) stay
    # bit-identical, BatchNorm statistics included; every RPN parameter trained.
    assert same(s2, s3, "backbone.")
    assert same(s2, s3, "roi_heads.")
    assert all_changed(s2, s3, "proposal_generator.")
    # Step 4 starts from step 3's: the backbone and the RPN stay, the box head and predictor train.
    assert same(s3, s4, "backbone.")
    assert same(s3, s4, "proposal_generator.")
    assert all_changed(s3, s4, "roi_heads.")
    # The result is step 4's model.
    final = _weights(os.path.join(full_run, "model_final.pth"))
    assert final.keys() == s4.keys() and all(torch.equal(final[k], s4[k]) for k in s4)
    assert read_completed(full_run) == STEPS


def test_the_final_model_is_a_plain_faster_rcnn_with_one_backbone(full_run):
    cfg = LazyConfig.load(configs_root() / CONFIG)
    model = instantiate(cfg.model)
    state = _weights(os.path.join(full_run, "model_final.pth"))
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert not missing and not unexpected
    assert model.train_mode == "joint" and model.proposal_features is None

    seen: dict[str, dict] = {}
    model.backbone.register_forward_hook(lambda m, args, out: seen.__setitem__("backbone", out))
    model.proposal_generator.register_forward_pre_hook(lambda m, args: seen.__setitem__("rpn", args[1]))
    model.roi_heads.register_forward_pre_hook(lambda m, args: seen.__setitem__("roi_heads", args[1]))
    model.eval()
    with torch.no_grad():
        model([{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)}])
    for name in model.proposal_generator.in_features:
        assert seen["rpn"][name] is seen["backbone"][name]
    for name in model.roi_heads.in_features:
        assert seen["roi_heads"][name] is seen["backbone"][name]


def test_step_2_proposes_with_a_frozen_copy_of_step_1(full_run):
    from rcnnzoo.engine.stages import attach_proposal_network

    cfg = LazyConfig.load(configs_root() / CONFIG)
    model = instantiate(cfg.model).eval()
    model.load_state_dict(_final(full_run, "2_fast_rcnn"))
    attach_proposal_network(model, os.path.join(full_run, "1_rpn", "model_final.pth"), torch.device("cpu"))
    step1 = instantiate(cfg.model).eval()
    step1.load_state_dict(_final(full_run, "1_rpn"))
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = model.proposal_features(image)
        expected = step1.backbone(image)
        own = model.backbone(image)
    assert all(torch.equal(features[k], expected[k]) for k in expected)
    assert not torch.equal(features["p2"], own["p2"])
    assert not any(p.requires_grad for p in model.proposal_features.backbone.parameters())
    # not a submodule: the model's checkpoints hold its own weights only
    assert model.state_dict().keys() == step1.state_dict().keys()


# ----------------------------------------------------------------------------------- resume


# Run in a subprocess: train_net, with a SIGKILL of the process itself right after step 3 saves its
# checkpoint of iteration 3 (of 7): a kill at a known point, with nothing run after it.
_KILLED_IN_STEP_3 = """
import os, signal, sys
from rcnnzoo.checkpoint import Checkpointer
from rcnnzoo.tools import train_net

save = Checkpointer.save

def save_then_die(self, name, **kwargs):
    save(self, name, **kwargs)
    if os.path.basename(self.save_dir) == "3_rpn_shared" and name == "model_0000003":
        os.kill(os.getpid(), signal.SIGKILL)

Checkpointer.save = save_then_die
train_net.main(sys.argv[1:])
"""


def _kill_during_step_3(output_dir: str) -> None:
    # The same number of threads as this process, so that both compute the same bits.
    threads = str(torch.get_num_threads())
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    args = [f"--config-file={CONFIG}", *FAST, f"train.output_dir={output_dir}"]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_IN_STEP_3, *args], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]


def test_kill_in_step_3_then_resume_skips_steps_1_and_2_and_ends_as_uninterrupted(tmp_path, full_run):
    out = str(tmp_path)
    _kill_during_step_3(out)
    assert read_completed(out) == STEPS[:2]
    done = {step: os.stat(os.path.join(out, step, "model_final.pth")).st_mtime_ns for step in STEPS[:2]}
    listing = {step: sorted(os.listdir(os.path.join(out, step))) for step in STEPS[:2]}
    with open(os.path.join(out, "3_rpn_shared", "last_checkpoint"), encoding="utf-8") as f:
        resume_at = (
            torch.load(os.path.join(out, "3_rpn_shared", f.read()), weights_only=True)["iteration"] + 1
        )

    messages = _train(out, resume=True)

    for step in STEPS[:2]:  # steps 1 and 2 are not run again
        assert os.stat(os.path.join(out, step, "model_final.pth")).st_mtime_ns == done[step]
        assert sorted(os.listdir(os.path.join(out, step))) == listing[step]
        assert any(
            m.startswith(f"Stage {STEPS.index(step) + 1}/4 '{step}': completed earlier") for m in messages
        )
    starts = [m for m in messages if m.startswith("Starting training from iteration")]
    assert resume_at == 4
    assert starts == ["Starting training from iteration 4", "Starting training from iteration 0"]
    assert read_completed(out) == STEPS
    resumed = _weights(os.path.join(out, "model_final.pth"))
    uninterrupted = _weights(os.path.join(full_run, "model_final.pth"))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_without_resume_every_step_runs_again(tmp_path):
    out = str(tmp_path)
    with open(os.path.join(out, STATE_FILE), "w", encoding="utf-8") as f:
        f.write('{"completed": ["1_rpn"]}')
    messages = _train(out, "train.max_iter=8")
    starts = [m for m in messages if m.startswith("Starting training from iteration")]
    assert starts == ["Starting training from iteration 0"] * 4
    assert read_completed(out) == STEPS


# ----------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_the_shapes_alternating_config_trains_from_one_command_close_to_joint(tmp_path):
    """The whole config, as the README runs it (about 12 minutes on 2 cores)."""
    with _restored_loggers():
        results = train_net.main([f"--config-file={CONFIG}", f"train.output_dir={tmp_path}"])
    assert results["bbox"]["AP50"] >= JOINT_AP50 - 0.05, results
    assert os.path.isfile(os.path.join(tmp_path, "model_final.pth"))
