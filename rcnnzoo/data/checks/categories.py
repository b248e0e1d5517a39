"""Category ids: ``unknown_category`` problems (a ``category_id`` outside the dataset's classes),
and :func:`check_category_ids`, which refuses them before training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .annotations import _Annotations
from .report import Problem, _listing

__all__ = ["check_category_ids"]


def check_category_ids(
    dicts: Sequence[dict],
    thing_classes: Sequence[str] | None,
    *,
    name: str = "",
    json_file: str | None = None,
) -> None:
    """Raise if an annotation's ``category_id`` is not an integer in ``0..len(thing_classes) - 1``.

    Without ``thing_classes`` only negative or non-integer ids are refused.

    Raises:
        ValueError: listing the offending annotations (image file and annotation id), at most 20.
    """
    ann = _Annotations.from_dicts(dicts)
    num_known = len(thing_classes) if thing_classes is not None else None
    unknown = (ann.category < 0) | (ann.category >= num_known if num_known is not None else False)
    if unknown.any():
        problems = list(_unknown_category_problems(dicts, ann, unknown, thing_classes, num_known))
        where = f"Dataset {name!r}" + (f" ({json_file})" if json_file else "")
        raise ValueError(
            f"{where} has {len(problems)} annotations with an unknown category_id:\n"
            + _listing(problems)
            + "\nFix the annotations or the dataset's thing_classes."
        )


def _unknown_category_problems(
    dicts: Sequence[dict],
    ann: _Annotations,
    unknown: np.ndarray,
    classes: Sequence[str] | None,
    num_known: int | None,
) -> Iterable[Problem]:
    allowed = f"0..{num_known - 1}" if num_known else "none"
    what = f"the {num_known} classes of the metadata" if classes is not None else f"num_classes={num_known}"
    for k in np.flatnonzero(unknown):
        d = dicts[ann.image[k]]
        a = d["annotations"][ann.index[k]]
        raw = a.get("dataset_category_id")
        in_file = f" (id {raw} in the annotation file)" if raw is not None else ""
        yield Problem(
            "unknown_category",
            "error",
            f"category_id={a.get('category_id')!r}{in_file} is not among {what} ({allowed})",
            file=d.get("file_name"),
            annotation_id=a.get("id"),
            image_id=d.get("image_id"),
        )
