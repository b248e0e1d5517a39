"""download(): verified, atomic caching, against an HTTP server started on 127.0.0.1 by the test."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest

from rcnnzoo.model_zoo.download import DownloadError, download, path_manager

PAYLOAD = bytes(range(256)) * 64  # 16 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        if self.path.startswith("/files/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path.startswith("/truncated/"):
            # announces the whole file, sends a tenth of it, then closes the connection
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 10])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    hits: list[str] = []
    handler = type("Handler", (_Handler,), {"hits": hits})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _files_in(directory) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(directory) for f in files]


def test_good_file_is_cached_and_served_from_cache(server, tmp_path):
    base, hits = server
    url = f"{base}/files/model_final.pth"
    path = download(url, PAYLOAD_SHA, cache_dir=str(tmp_path), progress=False)
    assert open(path, "rb").read() == PAYLOAD
    assert path.startswith(str(tmp_path))
    assert download(url, PAYLOAD_SHA.upper(), cache_dir=str(tmp_path), progress=False) == path
    assert hits == ["/files/model_final.pth"]  # the second call did not reach the server
    assert _files_in(tmp_path) == [path]  # no temporary file left behind


def test_cache_dir_from_environment(server, tmp_path, monkeypatch):
    base, _ = server
    monkeypatch.setenv("RCNNZOO_CACHE", str(tmp_path / "env-cache"))
    path = download(f"{base}/files/a.bin", progress=False)
    assert path.startswith(str(tmp_path / "env-cache"))


def test_wrong_checksum_names_url_and_both_digests_and_caches_nothing(server, tmp_path):
    base, _ = server
    url = f"{base}/files/model.pth"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(url, wrong, cache_dir=str(tmp_path), progress=False)
    message = str(info.value)
    assert url in message and wrong in message and PAYLOAD_SHA in message
    assert _files_in(tmp_path) == []


def test_http_404_names_url(server, tmp_path):
    base, _ = server
    url = f"{base}/missing/model.pth"
    with pytest.raises(DownloadError, match="404") as info:
        download(url, cache_dir=str(tmp_path), progress=False)
    assert url in str(info.value)
    assert _files_in(tmp_path) == []


def test_truncated_transfer_caches_nothing(server, tmp_path):
    base, hits = server
    url = f"{base}/truncated/model.pth"
    with pytest.raises(DownloadError, match="interrupted") as info:
        download(url, cache_dir=str(tmp_path), progress=False)
    assert url in str(info.value)
    assert _files_in(tmp_path) == []
    with pytest.raises(DownloadError):  # not trusted on the next call either: fetched again
        download(url, cache_dir=str(tmp_path), progress=False)
    assert len(hits) == 2


def test_no_network_names_url(tmp_path):
    # a port on 127.0.0.1 that nothing listens on
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pth"
    with pytest.raises(DownloadError, match="Could not reach") as info:
        download(url, cache_dir=str(tmp_path), progress=False)
    assert url in str(info.value)


def test_local_path_and_file_url(tmp_path):
    local = tmp_path / "weights.pth"
    local.write_bytes(PAYLOAD)
    assert download(str(local), PAYLOAD_SHA) == str(local)
    assert download(local.as_uri(), PAYLOAD_SHA) == str(local)
    with path_manager.open(local.as_uri(), "rb") as f:
        assert f.read() == PAYLOAD
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download(str(local), "f" * 64)
    with pytest.raises(FileNotFoundError):
        download(str(tmp_path / "absent.pth"))


def test_path_manager_fetches_urls_into_the_cache(server, tmp_path, monkeypatch):
    base, hits = server
    monkeypatch.setenv("RCNNZOO_CACHE", str(tmp_path))
    url = f"{base}/files/b.bin"
    with path_manager.open(url, "rb") as f:
        assert f.read() == PAYLOAD
    assert path_manager.get_local_path(url).startswith(str(tmp_path))
    assert hits == ["/files/b.bin"]


# ------------------------------------------------------------------ published prefixes, trust on first use
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_sha256_and_md5_prefixes_are_checked(server, tmp_path):
    # torchvision publishes 8 hex digits of the sha256, detectron2 6 of the md5, in the file names
    base, _ = server
    path = download(f"{base}/files/a.pth", PAYLOAD_SHA[:8], cache_dir=str(tmp_path), progress=False)
    assert open(path, "rb").read() == PAYLOAD
    assert download(
        f"{base}/files/b.pkl", md5=PAYLOAD_MD5[:6].upper(), cache_dir=str(tmp_path), progress=False
    )
    wrong = ("0" if PAYLOAD_SHA[0] != "0" else "1") + PAYLOAD_SHA[1:8]
    with pytest.raises(DownloadError, match="expected sha256 prefix") as info:
        download(f"{base}/files/c.pth", wrong, cache_dir=str(tmp_path), progress=False)
    assert wrong in str(info.value) and PAYLOAD_SHA in str(info.value)
    with pytest.raises(DownloadError, match="expected md5 prefix"):
        download(
            f"{base}/files/d.pkl",
            md5="abcdef" if PAYLOAD_MD5[:6] != "abcdef" else "fedcba",
            cache_dir=str(tmp_path),
            progress=False,
        )
    assert sorted(os.path.basename(p) for p in _files_in(tmp_path)) == ["a.pth", "b.pkl"]


def test_checksum_that_checks_nothing_is_refused(tmp_path):
    local = tmp_path / "w.pth"
    local.write_bytes(PAYLOAD)
    for bad in ("25", "xyz12345", "0" * 65):
        with pytest.raises(ValueError, match="hex digest"):
            download(str(local), bad)


def test_unpublished_checksum_is_recorded_on_first_use_and_checked_after(server, tmp_path, caplog):
    base, hits = server
    url = f"{base}/files/R-50.pkl"
    with caplog.at_level("WARNING", logger="rcnnzoo.model_zoo.download"):
        path = download(url, record_digest=True, cache_dir=str(tmp_path), progress=False)
    assert url in caplog.text and "trusted it on first use" in caplog.text
    record = path + ".sha256"
    assert open(record).read().split() == [PAYLOAD_SHA, "R-50.pkl"]  # sha256sum's format
    caplog.clear()
    assert download(url, record_digest=True, cache_dir=str(tmp_path), progress=False) == path
    assert hits == ["/files/R-50.pkl"] and "first use" not in caplog.text  # cached, checked, no warning

    # the cached file changed on disk: fetched again, and the server's bytes match the record
    with open(path, "r+b") as f:
        f.write(b"\xff")
    assert download(url, record_digest=True, cache_dir=str(tmp_path), progress=False) == path
    assert open(path, "rb").read() == PAYLOAD and len(hits) == 2

    # the file at the URL is not the one first downloaded: refused, naming the record to delete
    with open(record, "w") as f:
        f.write("ab" * 32 + "  R-50.pkl\n")
    os.remove(path)
    with pytest.raises(DownloadError, match="recorded at the first download") as info:
        download(url, record_digest=True, cache_dir=str(tmp_path), progress=False)
    assert url in str(info.value) and record in str(info.value)
    assert not os.path.exists(path)
