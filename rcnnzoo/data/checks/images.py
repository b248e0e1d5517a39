"""Image files: ``missing_image``, ``unreadable_image`` and ``image_size_mismatch`` (the decoded
size differs from the dict's), found by checking that each file exists or by decoding it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2

from .report import DatasetReport, Problem

__all__ = ["AUTO_DECODE_LIMIT", "READ_IMAGE_MODES"]

READ_IMAGE_MODES = ("auto", "all", "exists", "none")
AUTO_DECODE_LIMIT = 2000  # read_images="auto" decodes datasets up to this many images


def _read_status(path: str | None, decode: bool) -> tuple[str, tuple[int, int] | None]:
    """("ok" | "missing" | "unreadable", (h, w) when decoded)."""
    if not path or not os.path.isfile(path):
        return "missing", None
    if not decode:
        return "ok", None
    image = cv2.imread(path, cv2.IMREAD_COLOR)  # as the mapper reads it (EXIF orientation applied)
    if image is None:
        return "unreadable", None
    return "ok", image.shape[:2]


def _check_images(dicts: Sequence[dict], report: DatasetReport, read_images: str, progress: bool) -> None:
    decode = read_images == "all" or (read_images == "auto" and len(dicts) <= AUTO_DECODE_LIMIT)
    report.images_checked = "decoded" if decode else "existence checked"
    paths = [d.get("file_name") for d in dicts]
    bar = None
    if progress and decode:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc=f"Reading the images of {report.name}", unit="img")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        # cv2 decodes without the GIL: threads help; a plain existence check needs none
        results: Iterable = (
            pool.map(lambda p: _read_status(p, True), paths)
            if decode
            else (_read_status(p, False) for p in paths)
        )
        for d, path, (status, hw) in zip(dicts, paths, results):
            if bar is not None:
                bar.update()
            at = {"file": path, "image_id": d.get("image_id")}
            relative = status != "ok" and path and not os.path.isabs(path)
            looked = f" (looked for {os.path.abspath(path)})" if relative else ""
            if status == "missing":
                message = f"image file not found{looked}" if path else "the dataset dict has no file_name"
                report.add(Problem("missing_image", "error", message, **at))
            elif status == "unreadable":
                message = f"image file cannot be decoded (corrupt or not an image){looked}"
                report.add(Problem("unreadable_image", "error", message, **at))
            elif hw is not None and "height" in d and "width" in d and hw != (d["height"], d["width"]):
                swapped = " (swapped: EXIF orientation?)" if hw == (d["width"], d["height"]) else ""
                message = (
                    f"decoded image is {hw[1]}x{hw[0]} (WxH) but the dataset says "
                    f"{d['width']}x{d['height']}{swapped}"
                )
                report.add(Problem("image_size_mismatch", "error", message, **at))
    if bar is not None:
        bar.close()
