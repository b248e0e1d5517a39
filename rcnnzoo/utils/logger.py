"""Logging setup: a short console format and a detailed ``log.txt`` in the output directory."""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["setup_logger"]

# Marks handlers installed by setup_logger, so a repeated call can find (and not duplicate) them.
_HANDLER_TAG = "_rcnnzoo_handler"


class _ShortFormatter(logging.Formatter):
    """``[time name]: message``, with the level spelled out only for warnings and errors."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging API name
        line = super().formatMessage(record)
        if record.levelno >= logging.WARNING:
            return line.replace("]: ", f"] {record.levelname}: ", 1)
        return line


def _log_file_path(output: str, distributed_rank: int) -> str:
    """``output`` is a file (``*.txt`` / ``*.log``) or a directory that gets ``log.txt``."""
    path = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
    if distributed_rank > 0:
        path = f"{path}.rank{distributed_rank}"
    return path


def _tagged(logger: logging.Logger, kind: str) -> list[logging.Handler]:
    return [h for h in logger.handlers if getattr(h, _HANDLER_TAG, None) == kind]


def _add_console(logger: logging.Logger, name: str) -> None:
    if _tagged(logger, "console"):
        return
    handler = logging.StreamHandler(stream=sys.stdout)
    handler.setLevel(logging.INFO)
    handler.setFormatter(_ShortFormatter(f"[%(asctime)s {name}]: %(message)s", datefmt="%m/%d %H:%M:%S"))
    setattr(handler, _HANDLER_TAG, "console")
    logger.addHandler(handler)


def _set_file(logger: logging.Logger, path: str) -> None:
    existing = _tagged(logger, "file")
    if any(h.baseFilename == os.path.abspath(path) for h in existing):  # type: ignore[attr-defined]
        return
    # A new output directory replaces the old file (e.g. several runs in one process).
    for handler in existing:
        logger.removeHandler(handler)
        handler.close()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%m/%d %H:%M:%S")
    )
    setattr(handler, _HANDLER_TAG, "file")
    logger.addHandler(handler)


def setup_logger(
    output: str | None = None, name: str = "rcnnzoo", distributed_rank: int = 0
) -> logging.Logger:
    """Configure logger ``name``: console output on rank 0 and, with ``output``, a log file.

    Idempotent: calling it again adds no duplicate handlers; a different ``output`` moves the
    file handler to the new file.

    Args:
        output: a directory (the log goes to ``<output>/log.txt``) or a ``*.txt``/``*.log`` file.
            Ranks other than 0 write to ``log.txt.rank<r>``.
        name: the logger to configure; module loggers below it (``rcnnzoo.engine...``) inherit it.
        distributed_rank: the process's global rank; only rank 0 logs to the console.

    Returns:
        The configured logger.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    # Our handlers print everything once; propagating to root would print it twice.
    logger.propagate = False
    if distributed_rank == 0:
        _add_console(logger, name)
    if output:
        _set_file(logger, _log_file_path(output, distributed_rank))
    return logger
