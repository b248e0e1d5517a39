"""Fetching weights: http(s), ``file://`` and local paths, with a verified, crash-safe cache.

Every path goes through :data:`path_manager`, an iopath ``PathManager`` with two handlers of ours:

* ``http://`` / ``https://``: streamed into ``$RCNNZOO_CACHE`` (default ``~/.cache/rcnnzoo``).
  iopath's own ``HTTPURLHandler`` is not used, because it keeps whatever arrived in its cache
  before anyone could check it; here the bytes go to a temporary file in the cache directory,
  the sha256 is checked, and only then is the file renamed (``os.replace``) to its cached name.
  An interrupted, truncated or corrupted transfer therefore never leaves a file that the next
  run would trust.
* ``file://``: the local file it names (iopath has no handler for the scheme).

Local paths and ``file://`` URLs are not copied: :func:`download` verifies the checksum (when
given) and returns the path itself.

Example::

    from rcnnzoo.model_zoo.download import download

    path = download("https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
                    sha256="258fb6c6...")
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from typing import IO, Any
from urllib.parse import unquote, urlparse

from iopath.common.file_io import PathHandler, PathManager
from tqdm import tqdm

__all__ = ["DownloadError", "cache_dir_default", "cached_path_for", "download", "path_manager", "sha256_of"]

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


class DownloadError(OSError):
    """A download that failed (HTTP error, no network, truncated transfer) or a wrong checksum.

    The message always names the URL.
    """


def cache_dir_default() -> str:
    """``$RCNNZOO_CACHE`` if set, else ``~/.cache/rcnnzoo``."""
    return os.path.expanduser(os.environ.get("RCNNZOO_CACHE") or os.path.join("~", ".cache", "rcnnzoo"))


def sha256_of(path: str) -> str:
    """Hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path_for(url: str, cache_dir: str | None = None) -> str:
    """Where :func:`download` keeps ``url``: ``<cache>/<host>/<path of the URL>``."""
    parsed = urlparse(url)
    parts = [p for p in unquote(parsed.path).split("/") if p not in ("", ".", "..")]
    if not parts:
        raise ValueError(f"Cannot name a cache file for {url!r}: the URL has no file name")
    host = parsed.netloc.replace(":", "_") or "_"
    return os.path.join(cache_dir or cache_dir_default(), host, *parts)


def _is_remote(url: str) -> bool:
    return urlparse(url).scheme in ("http", "https")


def download(
    url: str, sha256: str | None = None, *, cache_dir: str | None = None, progress: bool = True
) -> str:
    """A local path holding the contents of ``url``, fetched at most once.

    Args:
        url: ``http(s)://...``, ``file://...`` or a local path.
        sha256: expected hex digest (case-insensitive). For a URL, a download whose digest
            differs is discarded and never enters the cache; for a local file, a mismatch is an
            error. ``None`` skips the check.
        cache_dir: where URLs are cached; default :func:`cache_dir_default`.
        progress: show a tqdm progress bar while downloading.

    Returns:
        the cached file (URLs) or the file itself (local paths, ``file://``).

    Raises:
        DownloadError: HTTP error, no network, a truncated transfer, or a wrong checksum
            (naming the URL, and for a checksum both digests).
        FileNotFoundError: a local path or ``file://`` URL that does not exist.
    """
    expected = sha256.lower() if sha256 else None
    if not _is_remote(url):
        local = path_manager.get_local_path(url)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"No such file: {url}")
        if expected:
            _check_digest(url, expected, sha256_of(local))
        return local

    target = cached_path_for(url, cache_dir)
    if os.path.isfile(target):
        # Only verified files enter the cache; a digest given now for a file cached without one
        # is still checked, and a stale file is fetched again rather than trusted.
        if not expected or sha256_of(target) == expected:
            return target
        os.remove(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    _fetch_verified(url, target, expected, progress)
    return target


def _check_digest(url: str, expected: str, actual: str) -> None:
    if actual != expected:
        raise DownloadError(
            f"Checksum mismatch for {url}: expected sha256 {expected}, got {actual}. "
            "The file was not cached; the URL may point at another version of the file, or the "
            "transfer was corrupted."
        )


def _fetch_verified(url: str, target: str, expected: str | None, progress: bool) -> None:
    """Stream ``url`` into a temporary file beside ``target``; rename it into place only if complete
    and (when ``expected`` is given) of the right digest. The temporary file is always removed."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".part", dir=os.path.dirname(target)
    )
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _stream(url, out, progress, os.path.basename(target))
            out.flush()
            os.fsync(out.fileno())
        if expected:
            _check_digest(url, expected, actual)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _stream(url: str, out: IO[bytes], progress: bool, name: str) -> str:
    """Copy the body of ``url`` into ``out``; return its hex sha256. Raises DownloadError."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=name, disable=not progress, leave=False
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise DownloadError(f"Download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise DownloadError(
            f"Could not reach {url}: {e.reason}. Check the network connection, or download the file "
            "yourself and pass its local path."
        ) from e
    except (TimeoutError, http.client.IncompleteRead, ConnectionError) as e:
        raise DownloadError(
            f"Download of {url} was interrupted ({type(e).__name__}: {e}); nothing was cached."
        ) from e
    if total is not None and received != total:
        raise DownloadError(
            f"Download of {url} was interrupted: received {received} of {total} bytes; nothing was cached."
        )
    return digest.hexdigest()


class _VerifiedHTTPHandler(PathHandler):
    """iopath handler for http(s) URLs that caches through :func:`download` (no checksum)."""

    def _get_supported_prefixes(self) -> list[str]:
        return ["http://", "https://"]

    def _get_local_path(
        self, path: str, force: bool = False, cache_dir: str | None = None, **kwargs: Any
    ) -> str:
        self._check_kwargs(kwargs)
        if force and os.path.isfile(cached_path_for(path, cache_dir)):
            os.remove(cached_path_for(path, cache_dir))
        return download(path, cache_dir=cache_dir)

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any) -> IO[Any]:
        self._check_kwargs(kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"{path} can only be opened for reading, not {mode!r}")
        return open(download(path), mode)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        self._check_kwargs(kwargs)
        return os.path.isfile(cached_path_for(path))


class _FileURLHandler(PathHandler):
    """iopath handler for ``file://`` URLs: the local file they name."""

    def _get_supported_prefixes(self) -> list[str]:
        return ["file://"]

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        return urllib.request.url2pathname(urlparse(path).path)

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any) -> IO[Any]:
        self._check_kwargs(kwargs)
        return open(self._get_local_path(path), mode, buffering)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        self._check_kwargs(kwargs)
        return os.path.exists(self._get_local_path(path))


path_manager = PathManager()
"""iopath PathManager for rcnnzoo: verified http(s) cache, ``file://``, and local paths."""
path_manager.register_handler(_VerifiedHTTPHandler())
path_manager.register_handler(_FileURLHandler())
