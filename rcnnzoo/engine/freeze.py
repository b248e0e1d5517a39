"""Freeze parameters by name: module paths, glob patterns or regular expressions.

A config lists what must not train::

    train.freeze = [
        "backbone",                          # a module path: everything under it
        "proposal_generator.head.conv.*",    # a glob (``*`` also crosses dots)
        r"re:roi_heads\\.box_head\\.fc1\\..*",  # "re:" + a regular expression (whole-name match)
    ]

and :func:`do_train <rcnnzoo.engine.do_train>` applies it before the optimizer is built, so the
frozen parameters are not even handed to the optimizer (no weight decay, no momentum).

A pattern is tried against a parameter's full name (``backbone.fpn_lateral2.weight``) and against
each enclosing module path (``backbone``, ``backbone.fpn_lateral2``), so a module path freezes
the whole module. A pattern that matches nothing is an error: a typo must not silently train
what was meant to stay fixed.

BatchNorm layers whose parameters are all frozen (or whose module a pattern names) also stop
updating their running statistics: a forward pre-hook puts them in eval mode at every call, so
they normalize with their stored statistics even while the rest of the model trains, and whoever
calls ``model.train()`` afterwards. They stay ``nn.BatchNorm2d`` modules (rather than being
replaced by ``FrozenBatchNorm2d``), so the state dict keeps its keys and the frozen buffers are
carried bit for bit from checkpoint to checkpoint.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from rcnnzoo.utils.registry import did_you_mean

__all__ = ["FreezeReport", "freeze_parameters", "matches_pattern", "parameter_counts", "format_counts"]

logger = logging.getLogger(__name__)

_REGEX_PREFIX = "re:"


def _enclosing_paths(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b", "a.b.c"]``: the name and every module path above it."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def matches_pattern(pattern: str, name: str) -> bool:
    """Whether ``pattern`` (a module path, a glob, or ``"re:"`` + a regex) names ``name`` or a module
    enclosing it. Globs use :func:`fnmatch.fnmatchcase`; a regex must match a whole path."""
    candidates = _enclosing_paths(name)
    if pattern.startswith(_REGEX_PREFIX):
        regex = re.compile(pattern[len(_REGEX_PREFIX) :])
        return any(regex.fullmatch(c) for c in candidates)
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


@dataclass
class ParameterCounts:
    """Scalars and tensors among a model's (distinct) parameters, trainable and frozen."""

    trainable: int = 0
    trainable_tensors: int = 0
    frozen: int = 0
    frozen_tensors: int = 0


def parameter_counts(model: nn.Module) -> ParameterCounts:
    """Count ``model``'s parameters by ``requires_grad`` (a parameter shared by two modules counts once)."""
    counts = ParameterCounts()
    for p in model.parameters():
        if p.requires_grad:
            counts.trainable += p.numel()
            counts.trainable_tensors += 1
        else:
            counts.frozen += p.numel()
            counts.frozen_tensors += 1
    return counts


def format_counts(counts: ParameterCounts) -> str:
    """e.g. ``"1,234 parameters (12 tensors) train, 5,678 (34 tensors) are frozen"``."""
    return (
        f"{counts.trainable:,} parameters ({counts.trainable_tensors} tensors) train, "
        f"{counts.frozen:,} ({counts.frozen_tensors} tensors) are frozen"
    )


@dataclass
class FreezeReport:
    """What :func:`freeze_parameters` did.

    Attributes:
        patterns: the patterns applied.
        frozen_names: the parameters the patterns matched (now ``requires_grad=False``), in model order.
        frozen_norms: module paths of the BatchNorm layers kept in eval mode.
        counts: the whole model's parameter counts afterwards (including parameters the model
            froze itself, e.g. a backbone's ``freeze_at``).
    """

    patterns: list[str] = field(default_factory=list)
    frozen_names: list[str] = field(default_factory=list)
    frozen_norms: list[str] = field(default_factory=list)
    counts: ParameterCounts = field(default_factory=ParameterCounts)

    def summary(self) -> str:
        """One log line: the counts, and what the patterns froze."""
        line = f"Parameters: {format_counts(self.counts)}"
        if self.patterns:
            line += (
                f"; train.freeze {self.patterns} froze {len(self.frozen_names)} tensors"
                f" and keeps {len(self.frozen_norms)} BatchNorm layers in eval mode"
            )
        return line


def _keep_in_eval(module: nn.Module, args: object) -> None:
    # Runs before every forward: whatever model.train() set, a frozen BatchNorm normalizes with
    # its stored statistics and leaves them (and num_batches_tracked) untouched.
    module.training = False


def _frozen_norms(model: nn.Module, patterns: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """BatchNorm layers named by a pattern, or whose parameters are all frozen."""
    norms = []
    for name, module in model.named_modules():
        if not isinstance(module, _BatchNorm):
            continue
        params = list(module.parameters())
        named = any(matches_pattern(p, name) for p in patterns)
        if named or (params and not any(p.requires_grad for p in params)):
            norms.append((name, module))
    return norms


def _check_all_match(model: nn.Module, patterns: Sequence[str], names: list[str]) -> None:
    modules = [n for n, _ in model.named_modules() if n]
    unmatched = [
        p
        for p in patterns
        if not any(matches_pattern(p, n) for n in names) and not any(matches_pattern(p, m) for m in modules)
    ]
    if not unmatched:
        return
    tops = sorted({n.split(".")[0] for n in names})
    hints = "".join(did_you_mean(p.removeprefix(_REGEX_PREFIX), modules) for p in unmatched)
    raise ValueError(
        f"Freeze pattern(s) {unmatched} match no parameter or module of the model.{hints} "
        f"Top-level modules: {', '.join(tops)}. Patterns are module paths, globs "
        "('backbone.*') or 're:' + a regular expression."
    )


def freeze_parameters(model: nn.Module, patterns: Sequence[str]) -> FreezeReport:
    """Freeze the parameters of ``model`` that ``patterns`` name, and keep frozen BatchNorms in eval mode.

    Args:
        model: the (unwrapped) model.
        patterns: module paths, globs or ``"re:"`` regexes (see the module docstring); ``[]``
            freezes nothing but still counts, and still keeps BatchNorms whose parameters the
            model froze itself in eval mode.

    Returns:
        A :class:`FreezeReport`; its :meth:`~FreezeReport.summary` is the log line.

    Raises:
        ValueError: a pattern matches nothing (with close module names), or is not a string.
    """
    patterns = list(patterns)
    bad = [p for p in patterns if not isinstance(p, str) or not p]
    if bad:
        raise ValueError(f"Freeze patterns must be non-empty strings, got {bad}")
    for p in patterns:
        if p.startswith(_REGEX_PREFIX):
            re.compile(p[len(_REGEX_PREFIX) :])  # a malformed regex fails here, with its position
    named = list(model.named_parameters())
    _check_all_match(model, patterns, [n for n, _ in named])
    frozen = []
    for name, param in named:
        if any(matches_pattern(p, name) for p in patterns):
            param.requires_grad_(False)
            frozen.append(name)
    norms = _frozen_norms(model, patterns)
    for _, module in norms:
        if not getattr(module, "_rcnnzoo_kept_in_eval", False):
            module.register_forward_pre_hook(_keep_in_eval)
            module._rcnnzoo_kept_in_eval = True
        module.eval()
    return FreezeReport(
        patterns=patterns,
        frozen_names=frozen,
        frozen_norms=[n for n, _ in norms],
        counts=parameter_counts(model),
    )
