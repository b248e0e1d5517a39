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

Checksums are what the publisher gives, no more: a full sha256, or only a *prefix* of one
(torchvision puts the first 8 hex digits of the sha256 in its file names, ``-258fb6c6.pth``) or
of an md5 (detectron2's ``model_final_b275ba.pkl``: 6 hex digits). A prefix catches a truncated
or corrupted transfer and a file replaced by another version, not a forgery made to match it.
Where nothing is published, ``record_digest=True`` trusts the first download: its sha256 is
written beside the cached file (``<file>.sha256``, ``sha256sum`` format) and every later use,
including a new download after the cached file was deleted, is checked against it.

Example::

    from rcnnzoo.model_zoo.download import download

    path = download("https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
                    sha256="258fb6c6")  # the published prefix
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote, urlparse

from iopath.common.file_io import PathHandler, PathManager
from tqdm import tqdm

__all__ = [
    "DownloadError",
    "RECORD_SUFFIX",
    "cache_dir_default",
    "cached_path_for",
    "download",
    "path_manager",
    "sha256_of",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_MIN_PREFIX = 6  # detectron2 publishes 6 hex digits of the md5; fewer would check almost nothing
_FULL_LENGTH = {"sha256": 64, "md5": 32}

RECORD_SUFFIX = ".sha256"
"""Beside a cached file downloaded with ``record_digest=True`` and no published checksum: its sha256."""


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


@dataclass(frozen=True)
class _Check:
    """One expected digest: ``algorithm`` (``"sha256"``/``"md5"``), the hex ``digest`` or a prefix of
    it, and where it came from (``"published"`` or the record file written at the first download)."""

    algorithm: str
    digest: str
    origin: str = "published"

    def describe(self) -> str:
        kind = "" if len(self.digest) == _FULL_LENGTH[self.algorithm] else " prefix"
        where = "" if self.origin == "published" else f" (recorded at the first download in {self.origin})"
        return f"{self.algorithm}{kind} {self.digest}{where}"


def _published_checks(sha256: str | None, md5: str | None) -> list[_Check]:
    checks = []
    for algorithm, value in (("sha256", sha256), ("md5", md5)):
        if not value:
            continue
        digest = value.lower()
        if not re.fullmatch(rf"[0-9a-f]{{{_MIN_PREFIX},{_FULL_LENGTH[algorithm]}}}", digest):
            raise ValueError(
                f"{algorithm}={value!r} is not a hex digest or a prefix of one "
                f"({_MIN_PREFIX} to {_FULL_LENGTH[algorithm]} hex digits)"
            )
        checks.append(_Check(algorithm, digest))
    return checks


def download(
    url: str,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    record_digest: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
) -> str:
    """A local path holding the contents of ``url``, fetched at most once.

    Args:
        url: ``http(s)://...``, ``file://...`` or a local path.
        sha256: expected hex digest, or a prefix of it (at least 6 hex digits) where only that is
            published; case-insensitive. For a URL, a download whose digest differs is discarded and
            never enters the cache; for a local file, a mismatch is an error. ``None`` skips the check.
        md5: the same for an md5 digest (detectron2's file names carry a prefix of theirs).
        record_digest: for a URL given neither ``sha256`` nor ``md5``: record the sha256 of the first
            download in ``<cached file>.sha256`` (with a warning naming the URL) and check every later
            use against it: trust on first use.
        cache_dir: where URLs are cached; default :func:`cache_dir_default`.
        progress: show a tqdm progress bar while downloading.

    Returns:
        the cached file (URLs) or the file itself (local paths, ``file://``).

    Raises:
        DownloadError: HTTP error, no network, a truncated transfer, or a wrong checksum
            (naming the URL, and for a checksum both digests).
        FileNotFoundError: a local path or ``file://`` URL that does not exist.
        ValueError: ``sha256``/``md5`` is not hex or is too short to check anything.
    """
    checks = _published_checks(sha256, md5)
    if not _is_remote(url):
        local = path_manager.get_local_path(url)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"No such file: {url}")
        if checks:
            _check_digests(url, checks, _digests_of(local, checks))
        return local

    target = cached_path_for(url, cache_dir)
    record = target + RECORD_SUFFIX
    first_use = record_digest and not checks
    if first_use and os.path.isfile(record):
        checks, first_use = [_Check("sha256", _read_record(record), record)], False
    if os.path.isfile(target):
        # Only verified files enter the cache; a digest given now for a file cached without one
        # is still checked, and a stale file is fetched again rather than trusted.
        if not checks or _matches(checks, _digests_of(target, checks)):
            if first_use:
                _write_record(url, record, sha256_of(target))
            return target
        os.remove(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    digests = _fetch_verified(url, target, checks, progress)
    if first_use:
        _write_record(url, record, digests["sha256"])
    return target


def _read_record(record: str) -> str:
    with open(record, encoding="utf-8") as f:
        fields = f.read().split()
    if not fields or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        raise DownloadError(f"{record} does not hold a sha256 digest; delete it to record a new one")
    return fields[0]


def _write_record(url: str, record: str, digest: str) -> None:
    """Write ``record`` atomically (``sha256sum`` format) and warn that the file was trusted unchecked."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(record)}.", suffix=".part", dir=os.path.dirname(record)
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{digest}  {os.path.basename(record)[: -len(RECORD_SUFFIX)]}\n")
        os.replace(tmp, record)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.warning(
        "No checksum is published for %s: trusted it on first use and recorded its sha256 %s in %s; "
        "later uses are checked against that record.",
        url,
        digest,
        record,
    )


def _digests_of(path: str, checks: list[_Check]) -> dict[str, str]:
    """Hex digests of the file at ``path`` for the algorithms ``checks`` use."""
    hashers = _hashers(checks)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            for h in hashers.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashers.items()}


def _hashers(checks: list[_Check]) -> dict[str, Any]:
    """sha256 always (a recorded digest needs it), md5 when a check uses it."""
    hashers = {"sha256": hashlib.sha256()}
    if any(c.algorithm == "md5" for c in checks):
        hashers["md5"] = hashlib.md5(usedforsecurity=False)
    return hashers


def _matches(checks: list[_Check], actual: dict[str, str]) -> bool:
    return all(actual[c.algorithm].startswith(c.digest) for c in checks)


def _check_digests(url: str, checks: list[_Check], actual: dict[str, str]) -> None:
    for check in checks:
        if not actual[check.algorithm].startswith(check.digest):
            hint = (
                "The file was not cached; the URL may point at another version of the file, or the "
                "transfer was corrupted."
            )
            if check.origin != "published":
                hint = (
                    "The file at the URL differs from the one downloaded first (it was replaced, or this "
                    f"transfer was corrupted); if the change is expected, delete {check.origin}."
                )
            raise DownloadError(
                f"Checksum mismatch for {url}: expected {check.describe()}, "
                f"got {actual[check.algorithm]}. {hint}"
            )


def _fetch_verified(url: str, target: str, checks: list[_Check], progress: bool) -> dict[str, str]:
    """Stream ``url`` into a temporary file beside ``target``; rename it into place only if complete
    and of the expected digests. The temporary file is always removed. Returns the digests."""
    fd, tmp = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".part", dir=os.path.dirname(target)
    )
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _stream(url, out, progress, os.path.basename(target), _hashers(checks))
            out.flush()
            os.fsync(out.fileno())
        _check_digests(url, checks, actual)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return actual


def _stream(url: str, out: IO[bytes], progress: bool, name: str, hashers: dict[str, Any]) -> dict[str, str]:
    """Copy the body of ``url`` into ``out``; return its hex digests (one per hasher). Raises DownloadError."""
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
                    for h in hashers.values():
                        h.update(chunk)
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
    return {name: h.hexdigest() for name, h in hashers.items()}


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
