"""Proposal files: precomputed proposals for every image of a dataset, in one ``.npz``.

Layout (all arrays; readable with ``np.load(path, allow_pickle=False)``)::

    ids      int64[I] or str[I]   the dataset's image_id of each image
    boxes    float32[N, 4]        XYXY in the ORIGINAL image's pixels, all images concatenated
    scores   float32[N]           higher is better (objectness logits, or -rank for selective search)
    offsets  int64[I + 1]         image i's proposals are boxes[offsets[i]:offsets[i + 1]]

``tools/precompute_proposals.py`` writes them; ``get_detection_dataset_dicts(...,
proposal_files=[...])`` attaches them to the dataset dicts (:func:`attach_proposals`) and the
:class:`~rcnnzoo.data.DatasetMapper` carries them through the augmentations.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rcnnzoo.structures import BoxMode

__all__ = ["ProposalFile", "attach_proposals", "load_proposals", "save_proposals", "PROPOSAL_FILE_KEYS"]

PROPOSAL_FILE_KEYS = ("ids", "boxes", "scores", "offsets")
# How many missing image ids an error message lists.
_SHOWN_MISSING = 5


def _id_key(image_id: Any) -> str:
    # ids are matched by their text, so an int id 7 saved from one loader finds the image whose
    # id another loader gives as "7" (json keys, VOC file stems); distinct ids have distinct text
    return str(image_id.item() if isinstance(image_id, np.generic) else image_id)


def _ids_array(image_ids: Sequence[Any]) -> np.ndarray:
    """int64[I] when every id is an integer, else str[I] (both load without pickle)."""
    ids = [i.item() if isinstance(i, np.generic) else i for i in image_ids]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return np.asarray(ids, dtype=np.int64).reshape(-1)
    return np.asarray([str(i) for i in ids], dtype=np.str_).reshape(-1)


@dataclass(frozen=True)
class ProposalFile:
    """The contents of a proposal file (see the module docstring for the arrays' layout)."""

    path: str
    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        """image id (as text) -> position in :attr:`ids`."""
        return {_id_key(i): k for k, i in enumerate(self.ids)}

    def proposals_of(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes float32[P, 4] and scores float32[P] of the image at ``position`` (views, not copies)."""
        start, end = int(self.offsets[position]), int(self.offsets[position + 1])
        return self.boxes[start:end], self.scores[start:end]


def save_proposals(
    path: str | os.PathLike,
    image_ids: Sequence[Any],
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
) -> None:
    """Write one proposal file, atomically (a reader never sees it half-written).

    Args:
        path: the ``.npz`` to write (parent folders are created). ``np.savez`` would append
            ``.npz`` to another suffix; the file is written exactly at ``path``.
        image_ids: per image, its dataset ``image_id`` (ints, or anything else, saved as text).
        boxes: per image, np.ndarray[P_i, 4] XYXY in the original image's pixels.
        scores: per image, np.ndarray[P_i], higher is better.

    Raises:
        ValueError: lengths that disagree, boxes not shaped [P, 4], or a repeated image id.
    """
    if not len(image_ids) == len(boxes) == len(scores):
        raise ValueError(
            f"save_proposals: {len(image_ids)} image ids, {len(boxes)} box arrays, {len(scores)} score arrays"
        )
    ids = _ids_array(image_ids)
    keys = [_id_key(i) for i in ids]
    if len(set(keys)) != len(keys):
        repeated = sorted({k for k in keys if keys.count(k) > 1})[:_SHOWN_MISSING]
        raise ValueError(f"save_proposals: repeated image ids {repeated}")
    box_list = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
    score_list = [np.asarray(s, dtype=np.float32).reshape(-1) for s in scores]
    for image_id, b, s in zip(keys, box_list, score_list):
        if len(b) != len(s):
            raise ValueError(f"save_proposals: image {image_id} has {len(b)} boxes but {len(s)} scores")
    counts = np.asarray([len(b) for b in box_list], dtype=np.int64)
    arrays = {
        "ids": ids,
        "boxes": np.concatenate(box_list) if box_list else np.zeros((0, 4), np.float32),
        "scores": np.concatenate(score_list) if score_list else np.zeros(0, np.float32),
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    }
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # imported here: rcnnzoo.checkpoint imports the data catalog, which imports this package
    from rcnnzoo.checkpoint import atomic_write

    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_proposals(path: str | os.PathLike) -> ProposalFile:
    """Read and check a proposal file written by :func:`save_proposals`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a proposal file (a key missing, or arrays that do not fit together);
            the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Proposal file not found: {os.path.abspath(path)}")
    arrays = _read_npz(path)
    missing = [k for k in PROPOSAL_FILE_KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path} is not a proposal file: it lacks {missing} (it has {sorted(arrays)}); "
            "make one with tools/precompute_proposals.py"
        )
    _check_layout(path, **arrays)
    return ProposalFile(
        path=path,
        ids=arrays["ids"],
        boxes=arrays["boxes"].astype(np.float32, copy=False),
        scores=arrays["scores"].astype(np.float32, copy=False),
        offsets=arrays["offsets"].astype(np.int64, copy=False),
    )


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not the named arrays of an .npz")
        with data:
            return {k: data[k] for k in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"Could not read proposal file {path}: {e}") from e


def _check_layout(
    path: str, ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray, offsets: np.ndarray
) -> None:
    problems = []
    if ids.ndim != 1:
        problems.append(f"ids has shape {ids.shape}, expected [I]")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        problems.append(f"boxes has shape {boxes.shape}, expected [N, 4]")
    if scores.shape != (len(boxes),):
        problems.append(f"scores has shape {scores.shape}, expected [{len(boxes)}] (one per box)")
    if offsets.shape != (len(ids) + 1,):
        problems.append(f"offsets has shape {offsets.shape}, expected [{len(ids) + 1}] (images + 1)")
    elif len(offsets) and (offsets[0] != 0 or offsets[-1] != len(boxes) or np.any(np.diff(offsets) < 0)):
        problems.append(f"offsets must rise from 0 to the number of boxes ({len(boxes)})")
    if problems:
        raise ValueError(f"Proposal file {path} is inconsistent: " + "; ".join(problems))


def attach_proposals(
    dataset_dicts: Sequence[dict], proposal_file: str | os.PathLike | ProposalFile, dataset_name: str = ""
) -> list[dict]:
    """Copies of ``dataset_dicts`` with each image's proposals from ``proposal_file``.

    Each dict gets ``proposal_boxes`` (float32[P, 4]), ``proposal_objectness_logits``
    (float32[P]) and ``proposal_bbox_mode`` (``BoxMode.XYXY_ABS``), in the original image's
    frame. Images of the file that the dataset lacks are ignored.

    Raises:
        ValueError: the file has no proposals for some of the dataset's images; the message
            names the file and the first missing image ids.
    """
    if not isinstance(proposal_file, ProposalFile):
        proposal_file = load_proposals(proposal_file)
    index = proposal_file.index()
    missing = [d["image_id"] for d in dataset_dicts if _id_key(d["image_id"]) not in index]
    if missing:
        which = f" of dataset {dataset_name!r}" if dataset_name else ""
        raise ValueError(
            f"Proposal file {proposal_file.path} has no proposals for {len(missing)} of the "
            f"{len(dataset_dicts)} images{which}; first missing image ids: {missing[:_SHOWN_MISSING]}. "
            "Was it made for another dataset? Make it with "
            "tools/precompute_proposals.py --dataset NAME"
        )
    out = []
    for d in dataset_dicts:
        boxes, scores = proposal_file.proposals_of(index[_id_key(d["image_id"])])
        out.append(
            {
                **d,
                "proposal_boxes": boxes,
                "proposal_objectness_logits": scores,
                "proposal_bbox_mode": BoxMode.XYXY_ABS,
            }
        )
    return out
