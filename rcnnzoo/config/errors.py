"""The one error type the config system raises when building or loading a config fails."""

from __future__ import annotations

__all__ = ["ConfigError", "error_text"]


class ConfigError(ValueError):
    """A config could not be loaded or instantiated.

    The message names where (the config path of the failing node, or the config file) and
    the original error; the original exception is kept as ``__cause__``.
    """


def error_text(exc: BaseException) -> str:
    """``"Type: message"`` for ``exc``, without the quotes ``str(KeyError)`` adds."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    return f"{type(exc).__name__}: {text}"
