"""What the dataset checks report: :class:`Problem` (one thing wrong) and :class:`DatasetReport`
(one dataset's counts, problems and anchor coverage), readable (``format``) and JSON-able (``to_dict``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["COVERAGE_IOU", "DatasetReport", "Problem"]

COVERAGE_IOU = 0.5  # a box is covered when its best anchor has at least this IoU with it


@dataclass
class Problem:
    """One thing wrong in a dataset.

    Attributes:
        kind: e.g. ``"degenerate_box"``, ``"missing_image"`` (see :mod:`rcnnzoo.data.checks`).
        severity: ``"error"`` or ``"warning"``.
        message: what is wrong, readable on its own.
        file: the image's ``file_name`` (None for dataset-wide problems).
        json_file: the annotation file the dataset was read from, when the metadata has it.
        annotation_id, image_id: the ``id`` of the annotation and ``image_id`` of the image, if any.
    """

    kind: str
    severity: str
    message: str
    file: str | None = None
    json_file: str | None = None
    annotation_id: Any = None
    image_id: Any = None

    def describe(self) -> str:
        """One line: ``file [annotation id=..]: message``."""
        where = self.file or ""
        if self.annotation_id is not None:
            where += f" [annotation id={self.annotation_id}]"
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "file": _jsonable(self.file),
            "json_file": _jsonable(self.json_file),
            "annotation_id": _jsonable(self.annotation_id),
            "image_id": _jsonable(self.image_id),
        }


@dataclass
class DatasetReport:
    """What :func:`check_dataset_dicts` found in one dataset.

    ``problems`` keeps at most ``max_per_kind`` problems of each kind; ``counts`` has the full count
    of each kind. ``anchor_coverage`` maps ``"all"``, ``"small"``, ``"medium"``, ``"large"`` to
    ``{"boxes": n, "covered": k, "share": k / n or None}`` (None when it was not computed; then
    ``coverage_note`` says why), where covered means the best anchor has IoU >= 0.5 at the
    training scale (``coverage_note`` also says which scale).
    """

    name: str
    split: str | None = None
    json_file: str | None = None
    num_images: int = 0
    num_instances: int = 0
    instances_per_class: dict[str, int] = field(default_factory=dict)
    images_without_objects: int = 0
    files_without_objects: list[str] = field(default_factory=list)
    images_checked: str = "not checked"
    anchor_coverage: dict[str, dict[str, Any]] | None = None
    coverage_note: str = ""
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    max_per_kind: int = 1000

    @property
    def label(self) -> str:
        """``'name'``, with ``[split]`` when the report is of a config's split."""
        return repr(self.name) + (f" [{self.split}]" if self.split else "")

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def add(self, problem: Problem) -> None:
        """Record ``problem`` (counted always, kept up to ``max_per_kind`` of its kind)."""
        if problem.json_file is None:
            problem.json_file = self.json_file
        self.counts[problem.kind] += 1
        if self.counts[problem.kind] <= self.max_per_kind:
            self.problems.append(problem)

    def format(self, max_lines_per_kind: int = 10) -> str:
        """A readable multi-line summary; at most ``max_lines_per_kind`` problems of each kind are listed."""
        source = f" (from {self.json_file})" if self.json_file else ""
        lines = [
            f"Dataset {self.label}{source}: {'OK' if self.ok else 'ERRORS'}",
            f"  {self.num_images} images ({self.images_checked}), {self.num_instances} instances, "
            f"{self.images_without_objects} images without objects",
        ]
        if self.instances_per_class:
            per_class = ", ".join(f"{k}: {v}" for k, v in self.instances_per_class.items())
            lines.append(f"  instances per class: {per_class}")
        lines.append(f"  anchor coverage (best anchor IoU >= {COVERAGE_IOU}): {self._format_coverage()}")
        for severity in ("error", "warning"):
            kinds = list(dict.fromkeys(p.kind for p in self.problems if p.severity == severity))
            if not kinds:
                continue
            lines.append(f"  {severity}s:")
            for kind in kinds:
                shown = [p for p in self.problems if p.kind == kind][:max_lines_per_kind]
                lines.append(f"    {kind} ({self.counts[kind]}):")
                lines += [f"      {p.describe()}" for p in shown]
                if self.counts[kind] > len(shown):
                    lines.append(f"      ... and {self.counts[kind] - len(shown)} more")
        return "\n".join(lines)

    def _format_coverage(self) -> str:
        if not self.anchor_coverage:
            return self.coverage_note or "not computed"
        parts = []
        for bucket, c in self.anchor_coverage.items():
            share = "-" if c["share"] is None else f"{100 * c['share']:.1f}%"
            parts.append(f"{bucket} {share} ({c['covered']}/{c['boxes']})")
        return ", ".join(parts) + (f"; {self.coverage_note}" if self.coverage_note else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the counts, the coverage and every kept problem."""
        return {
            "name": self.name,
            "split": self.split,
            "ok": self.ok,
            "json_file": self.json_file,
            "num_images": self.num_images,
            "num_instances": self.num_instances,
            "instances_per_class": dict(self.instances_per_class),
            "images_without_objects": self.images_without_objects,
            "files_without_objects": list(self.files_without_objects),
            "images_checked": self.images_checked,
            "anchor_coverage": self.anchor_coverage,
            "coverage_note": self.coverage_note,
            "problem_counts": dict(self.counts),
            "problems": [p.to_dict() for p in self.problems],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _listing(problems: Sequence[Problem], limit: int = 20) -> str:
    lines = [f"  {p.describe()}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)
