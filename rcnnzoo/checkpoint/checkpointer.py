"""Save and load training state: crash-safe writes, safe reads, and a load report.

Differences from fvcore's ``Checkpointer`` (which this builds on):

* **Atomic saves.** A checkpoint and the ``last_checkpoint`` pointer are written to a temporary
  file in the same directory, flushed, fsynced and moved into place with ``os.replace``. A crash
  mid-write leaves the previous checkpoint and pointer intact, so ``--resume`` always finds a
  readable file.
* **Safe loads.** Files are read with ``torch.load(weights_only=True)``, which executes no code
  from the file. A missing file names the path; a truncated or corrupt one says so.
* **No silent leniency.** A parameter whose shape differs from the model's is an error listing
  every such key with both shapes, unless the caller passes ``allow_shape_mismatch=True``
  (e.g. fine-tuning with another number of classes); skipped keys are then in the report.
* **A returned report.** :meth:`Checkpointer.load` returns a :class:`LoadReport` (missing,
  unexpected and skipped keys, the checkpointables restored, the extra data such as
  ``"iteration"``) instead of only logging.

A checkpoint is a dict with ``"model"`` (a plain state dict, no ``module.`` prefix),
one entry per registered checkpointable (``"optimizer"``, ``"scheduler"``, ...) and the extra
data passed to :meth:`Checkpointer.save` (the trainer passes ``iteration``). For an exact resume
the trainer also registers ``"rng"`` and ``"data_loader"`` (see :mod:`.training_state`).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import torch
from fvcore.common.checkpoint import Checkpointer as _FvcoreCheckpointer
from torch import nn

__all__ = ["class_dependent_prefixes", "Checkpointer", "LoadReport", "CheckpointError", "atomic_write"]

_POINTER_FILE = "last_checkpoint"


class CheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be used (corrupt, unsafe, or not matching the model)."""


@dataclass
class LoadReport:
    """What :meth:`Checkpointer.load` did.

    Attributes:
        path: the file loaded, or ``""`` when nothing was loaded.
        missing_keys: model keys absent from the checkpoint (left at their current values).
        unexpected_keys: checkpoint keys the model does not have (ignored).
        skipped_keys: ``(key, shape_in_checkpoint, shape_in_model)`` not loaded because the shapes
            differ; only non-empty where ``allow_shape_mismatch`` allowed them.
        loaded_checkpointables: names of the non-model objects restored (``"optimizer"``, ...).
        extra: the remaining checkpoint entries, e.g. ``{"iteration": 4999}``.
    """

    path: str = ""
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    skipped_keys: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    loaded_checkpointables: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def iteration(self) -> int | None:
        """The iteration stored in the checkpoint by the trainer, if any."""
        it = self.extra.get("iteration")
        return None if it is None else int(it)


def class_dependent_prefixes(model: nn.Module) -> list[str]:
    """State-dict key prefixes of the layers whose shapes follow the number of classes.

    A module lists such children in a ``class_dependent_layers`` attribute (the box predictor's
    classifier and box regressor, the mask head's predictor); e.g.
    ``["roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred."]``.
    """
    model = (
        model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
    )
    prefixes = []
    for name, module in model.named_modules():
        for child in getattr(module, "class_dependent_layers", ()):
            prefixes.append(f"{name}.{child}." if name else f"{child}.")
    return prefixes


def _strip_prefix(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Drop ``prefix`` from every key when all keys have it (a DDP-wrapped model's state dict)."""
    if not state_dict or not all(k.startswith(prefix) for k in state_dict):
        return state_dict  # unchanged, keeping an OrderedDict's _metadata (module versions)
    return {k[len(prefix) :]: v for k, v in state_dict.items()}


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows opening a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` so that it is either fully written or untouched.

    ``write`` receives a binary file object in ``path``'s directory; on success the data is
    flushed, fsynced and renamed over ``path``. On any error the temporary file is removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync_dir(directory)


# what torch.save wrote before its zip format: a pickle of this magic number comes first
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _is_plain_pickle(path: str) -> bool:
    """Whether ``path`` is a pickle that torch.save did not write (e.g. a detectron2 ``.pkl``)."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            return False
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_TORCH_MAGIC))
    except OSError:
        return False
    return head[:1] == b"\x80" and head != _LEGACY_TORCH_MAGIC


def _read_checkpoint(path: str) -> dict[str, Any]:
    """``torch.load`` with weights_only=True, turning its low-level errors into messages that name ``path``."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if _is_plain_pickle(path):
            raise CheckpointError(
                f"Checkpoint {path} is a plain pickle, not a torch checkpoint (a detectron2 or Detectron "
                "'.pkl'?); rcnnzoo does not unpickle arbitrary files. Convert it with "
                f"`python tools/convert_checkpoint.py {path} OUT.pth --source detectron2 --arch ARCH`, "
                "or give its model zoo name (model_zoo/MODEL_ZOO.md), which converts it safely"
            ) from e
        if "Unsupported global" in str(e):
            raise CheckpointError(
                f"Checkpoint {path} contains Python objects that torch.load(weights_only=True) refuses to "
                f"build; only tensors and plain containers can be loaded safely. Details: {e}"
            ) from e
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or truncated (could not be unpickled): {e}"
        ) from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"Checkpoint {path} holds a {type(data).__name__}, expected a dict")
    return data


def _shape_mismatches(
    checkpoint_sd: dict[str, Any], model_sd: dict[str, torch.Tensor]
) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """``(key, checkpoint shape, model shape)`` for keys present in both with different shapes."""
    mismatches = []
    for key, value in checkpoint_sd.items():
        target = model_sd.get(key)
        if target is None or isinstance(target, nn.parameter.UninitializedParameter):
            continue
        if tuple(value.shape) != tuple(target.shape):
            mismatches.append((key, tuple(value.shape), tuple(target.shape)))
    return mismatches


class Checkpointer(_FvcoreCheckpointer):
    """Save/load a model and other checkpointable objects (anything with ``state_dict()``).

    Example::

        checkpointer = Checkpointer(model, "output/", optimizer=optimizer, scheduler=scheduler)
        checkpointer.save("model_0000999", iteration=999)
        report = checkpointer.resume_or_load("init.pth", resume=True)
        start_iter = report.iteration + 1 if report.iteration is not None else 0
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        save_to_disk: bool = True,
        **other_checkpointables: Any,
    ) -> None:
        """
        Args:
            model: the model; a ``DistributedDataParallel``/``DataParallel`` wrapper is unwrapped.
            save_dir: local directory for checkpoints and the ``last_checkpoint`` pointer.
            optimizer: saved and restored as ``"optimizer"``.
            scheduler: an LR scheduler, saved and restored as ``"scheduler"``.
            save_to_disk: ``False`` makes :meth:`save` a no-op (ranks other than 0).
            other_checkpointables: further objects with ``state_dict()``/``load_state_dict()``.
        """
        checkpointables = dict(other_checkpointables)
        if optimizer is not None:
            checkpointables["optimizer"] = optimizer
        if scheduler is not None:
            checkpointables["scheduler"] = scheduler
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.logger = logging.getLogger(__name__)

    # ----------------------------------------------------------------------------------- save

    def save(
        self,
        name: str,
        *,
        checkpointables: list[str] | None = None,
        tag_last: bool = True,
        **extra: Any,
    ) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically and point ``last_checkpoint`` at it.

        A checkpointable with ``is_collective = True`` (e.g. :class:`PerRankState`) gathers its state
        from every process; with one among those saved, call ``save`` on every rank together (only
        the rank with ``save_to_disk`` writes).

        Args:
            name: file name without ``.pth``, e.g. ``"model_0004999"`` or ``"model_final"``.
            checkpointables: names of the registered objects to include; ``None`` includes all,
                ``[]`` only the model.
            tag_last: update ``last_checkpoint`` (``False`` for files that are no resume point,
                such as ``model_best``).
            extra: further data (tensors and plain types), e.g. ``iteration=4999``.
        """
        if not self.save_dir:
            return
        from rcnnzoo.modeling.inference_optimization import is_optimized_for_inference

        if is_optimized_for_inference(getattr(self.model, "module", self.model)):
            raise ValueError(
                f"Not saving {name!r}: the model was changed by optimize_for_inference (norms folded "
                "into convs), so its weights no longer match its config; save it before optimizing"
            )
        names = list(self.checkpointables) if checkpointables is None else list(checkpointables)
        unknown = [n for n in names if n not in self.checkpointables]
        if unknown:
            raise KeyError(f"Unknown checkpointables {unknown}; registered: {sorted(self.checkpointables)}")
        # Collective states first, on every rank, so that ranks that do not write still take part.
        data: dict[str, Any] = {
            n: self.checkpointables[n].state_dict()
            for n in names
            if getattr(self.checkpointables[n], "is_collective", False)
        }
        if not self.save_to_disk:
            return
        data["model"] = _strip_prefix(self.model.state_dict(), "module.")
        for key in names:
            if key not in data:
                data[key] = self.checkpointables[key].state_dict()
        data.update(extra)
        os.makedirs(self.save_dir, exist_ok=True)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        if tag_last:
            self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically point ``<save_dir>/last_checkpoint`` at ``last_filename_basename``."""
        pointer = os.path.join(self.save_dir, _POINTER_FILE)
        atomic_write(pointer, lambda f: f.write(last_filename_basename.encode("utf-8")))

    # ----------------------------------------------------------------------------------- load

    def load(
        self,
        path: str,
        checkpointables: list[str] | None = None,
        *,
        allow_shape_mismatch: bool | Sequence[str] = False,
    ) -> LoadReport:
        """Load the model (and checkpointables) from ``path``.

        Args:
            path: a checkpoint file, an http(s)/``file://`` URL, or a model zoo name
                (``"torchvision/fasterrcnn_resnet50_fpn"``: fetched and converted once, see
                :func:`rcnnzoo.model_zoo.catalog.resolve_weights`); ``""`` loads nothing and
                returns an empty report.
            checkpointables: names of the non-model objects to restore; ``None`` restores all that
                the file has, ``[]`` restores only the model.
            allow_shape_mismatch: skip (and report) parameters whose shapes differ instead of
                raising: ``True`` for any parameter, or a list of key prefixes (e.g.
                :func:`class_dependent_prefixes` to fine-tune on another number of classes); a
                mismatch outside the prefixes is still an error.

        Returns:
            A :class:`LoadReport`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            CheckpointError: the file is corrupt/truncated, unsafe to load, has no ``"model"``
                entry, or has shape-mismatched parameters (without ``allow_shape_mismatch``).
        """
        if not path:
            self.logger.info("No checkpoint given; the model keeps its initialization.")
            return LoadReport()
        local_path = self._local_path(path)
        self.logger.info(f"Loading checkpoint from {local_path}")
        checkpoint = self._load_file(local_path)
        report = self._load_model_state(checkpoint, local_path, allow_shape_mismatch)
        names = self.checkpointables if checkpointables is None else checkpointables
        for key in names:
            if key in checkpoint:
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
                report.loaded_checkpointables.append(key)
        report.extra = checkpoint
        self._log_report(report)
        return report

    def resume_or_load(
        self, path: str, *, resume: bool = True, allow_shape_mismatch: bool | Sequence[str] = False
    ) -> LoadReport:
        """Resume from ``last_checkpoint`` with every checkpointable if ``resume`` and one exists;
        otherwise load only the model from ``path`` (e.g. ``cfg.train.init_checkpoint``).

        ``allow_shape_mismatch`` applies to loading ``path`` only: a run's own checkpoint always
        matches its model."""
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        return self.load(path, checkpointables=[], allow_shape_mismatch=allow_shape_mismatch)

    def _local_path(self, path: str) -> str:
        if os.path.isfile(path):
            return path
        # Zoo names and URLs: fetched (checked) into the rcnnzoo cache, converted to rcnnzoo's layout
        # where they are another project's. Imported here: the model zoo itself uses this module.
        from rcnnzoo.model_zoo.catalog import resolve_weights

        path = resolve_weights(path, model=self.model)
        if os.path.isfile(path):
            return path
        try:  # other iopath handlers resolve to a local copy
            local = self.path_manager.get_local_path(path)
        except Exception as e:
            raise FileNotFoundError(f"Checkpoint not found: {path} ({e})") from e
        if not os.path.isfile(local):
            raise FileNotFoundError(f"Checkpoint not found: {path}")
        return local

    def _load_file(self, f: str) -> dict[str, Any]:
        return _read_checkpoint(f)

    def _load_model_state(
        self, checkpoint: dict[str, Any], path: str, allow_shape_mismatch: bool
    ) -> LoadReport:
        if "model" not in checkpoint:
            raise CheckpointError(
                f"Checkpoint {path} has no 'model' entry (top-level keys: {sorted(checkpoint)}); "
                "a bare state dict from another project must be converted first."
            )
        state = checkpoint.pop("model")
        self._convert_ndarray_to_tensor(state)
        state = _strip_prefix(state, "module.")
        mismatches = _shape_mismatches(state, self.model.state_dict())
        if isinstance(allow_shape_mismatch, bool):
            refused = [] if allow_shape_mismatch else mismatches
        else:
            prefixes = tuple(allow_shape_mismatch)
            refused = [m for m in mismatches if not m[0].startswith(prefixes)]
        if refused:
            lines = "\n".join(f"  {k}: {c} in checkpoint, {m} in model" for k, c, m in refused)
            hint = (
                "Only the class-dependent layers may differ when fine-tuning on another number of classes."
                if not isinstance(allow_shape_mismatch, bool)
                else "Pass allow_shape_mismatch=True to skip them (e.g. a different number of classes)."
            )
            raise CheckpointError(
                f"Checkpoint {path} has {len(refused)} parameter(s) whose shape differs from the model:\n"
                f"{lines}\n{hint}"
            )
        for key, _, _ in mismatches:
            state.pop(key)
        incompatible = self.model.load_state_dict(state, strict=False)
        return LoadReport(
            path=path,
            missing_keys=list(incompatible.missing_keys),
            unexpected_keys=list(incompatible.unexpected_keys),
            skipped_keys=mismatches,
        )

    def _log_report(self, report: LoadReport) -> None:
        if report.skipped_keys:  # one line: a fine-tune to another class count is expected to do this
            skipped = ", ".join(f"{k} {tuple(c)}->{tuple(m)}" for k, c, m in report.skipped_keys)
            self.logger.warning(
                f"Re-initialised {len(report.skipped_keys)} parameter(s) whose shape differs from the "
                f"checkpoint (checkpoint->model): {skipped}"
            )
        if report.missing_keys:
            self.logger.warning("Keys missing from the checkpoint:\n  " + "\n  ".join(report.missing_keys))
        if report.unexpected_keys:
            self.logger.warning("Checkpoint keys not in the model:\n  " + "\n  ".join(report.unexpected_keys))
