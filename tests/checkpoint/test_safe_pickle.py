"""load_pickle: plain data and numpy arrays come back; a pickle that would run code is refused unrun."""

from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import re
import subprocess

import numpy as np
import pytest
import torch

from rcnnzoo.checkpoint import CheckpointError, UnsafePickleError, load_pickle
from rcnnzoo.checkpoint.safe_pickle import ALLOWED_GLOBALS


def _detectron2_like() -> dict:
    rng = np.random.default_rng(0)
    return {
        "model": collections.OrderedDict(
            [
                ("backbone.bottom_up.stem.conv1.weight", rng.standard_normal((4, 3, 7, 7), dtype=np.float32)),
                ("roi_heads.box_predictor.cls_score.bias", rng.standard_normal(81).astype(np.float64)),
                ("half", np.zeros((2, 2), np.float16)),
                ("transposed", np.asfortranarray(rng.standard_normal((3, 5)))),
                ("strided", np.arange(20, dtype=np.int64)[::3]),
                ("empty", np.zeros((0, 4), np.float32)),
            ]
        ),
        "__author__": "Detectron2 Model Zoo",
        "matching_heuristics": True,
        "scalars": [np.float32(1.5), np.int64(7), np.bool_(True), 3, 2.5, 1j, 2**70, None, True],
        "containers": ({1, 2}, frozenset({"a"}), b"\x00\xffbytes", bytearray(b"ab"), "text", ()),
    }


def _assert_same(a, b) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_and_numpy_arrays_round_trip(tmp_path, protocol):
    data = _detectron2_like()
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    _assert_same(data, load_pickle(path))
    with open(path, "rb") as f:  # an open file works too
        _assert_same(data, load_pickle(f))


def test_numpy_1x_module_names_load():
    """numpy 1.x writes numpy.core.multiarray (numpy 2: numpy._core); both resolve to this numpy."""
    data = pickle.dumps({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float32(2)}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != data and b"numpy._core" not in old
    out = load_pickle(io.BytesIO(old))
    np.testing.assert_array_equal(out["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert out["s"] == np.float32(2)


def test_python2_pickle_of_an_array_with_latin1_byte_strings():
    """A Python 2 pickle keeps array bytes in a ``str`` (BINSTRING); read as latin-1 they survive."""
    arr = np.array([1.0, -2.5, 3.25], dtype=np.float32)
    raw = arr.tobytes()
    # hand-written protocol-2 stream, the way Python 2's cPickle writes {'w': arr}
    body = (
        b"\x80\x02}q\x00U\x01wq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03"
        b"K\x00\x85q\x04U\x01b\x87q\x05Rq\x06(K\x01K\x03\x85cnumpy\ndtype\nq\x07U\x02f4K\x00K\x01\x87Rq\x08"
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U" + bytes([len(raw)]) + raw + b"tbs."
    )
    out = load_pickle(io.BytesIO(body))
    np.testing.assert_array_equal(out["w"], arr)


class _Exploit:
    """Unpickling this calls ``func(*args)``; a real attack would not be this polite."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _side_effect_payloads(marker: str) -> list[tuple[str, object]]:
    import builtins

    return [
        ("posix.system" if os.name == "posix" else "nt.system", _Exploit(os.system, f"touch {marker}")),
        ("builtins.eval", _Exploit(builtins.eval, f"open({marker!r}, 'w').close()")),
        ("builtins.exec", _Exploit(builtins.exec, f"open({marker!r}, 'w').close()")),
        ("subprocess.Popen", _Exploit(subprocess.Popen, ["touch", marker])),
        ("subprocess.check_call", _Exploit(subprocess.check_call, ["touch", marker])),
    ]


def _written_name(name: str, protocol: int) -> str:
    """The global's name as pickle writes it: protocols 0-2 use Python 2's names (``__builtin__``)."""
    if protocol >= 3:
        return name
    module, attr = name.rsplit(".", 1)
    mapped = _compat_pickle.REVERSE_NAME_MAPPING.get((module, attr))
    if mapped:
        return ".".join(mapped)
    return f"{_compat_pickle.REVERSE_IMPORT_MAPPING.get(module, module)}.{attr}"


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize("index", range(5))
def test_code_running_pickles_are_refused_and_nothing_runs(tmp_path, protocol, index):
    marker = str(tmp_path / "pwned")
    name, payload = _side_effect_payloads(marker)[index]
    name = _written_name(name, protocol)
    path = tmp_path / "evil.pkl"
    # hidden among real weights, as a tampered model zoo file would be
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": np.zeros(3, np.float32)}, "x": payload}, f, protocol=protocol)

    with pytest.raises(UnsafePickleError, match=f"evil.pkl.*{re.escape(name)}") as info:
        load_pickle(path)
    assert info.value.global_name == name and info.value.file == str(path)
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, pickle.UnpicklingError)
    assert not os.path.exists(marker)
    # the payload does run under plain pickle: the test would notice a harmless file
    if index == 1:
        pickle.loads(path.read_bytes())
        assert os.path.exists(marker)


def test_codecs_encode_is_only_latin1():
    evil = _Exploit(__import__("_codecs").encode, "x", "rot13")
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        load_pickle(io.BytesIO(pickle.dumps(evil, protocol=2)))


def test_objects_of_other_classes_and_torch_files_are_refused(tmp_path):
    with pytest.raises(UnsafePickleError, match="collections.Counter"):
        load_pickle(io.BytesIO(pickle.dumps(collections.Counter("ab"))))
    with pytest.raises(UnsafePickleError, match=r"torch\._utils\._rebuild_tensor_v2"):
        load_pickle(io.BytesIO(pickle.dumps(torch.zeros(2))))  # a tensor pickled by plain pickle
    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pth")  # a zip archive, not a bare pickle
    with pytest.raises(CheckpointError, match="w.pth"):
        load_pickle(tmp_path / "w.pth")


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"w": np.zeros(100, np.float32)}, protocol=4)[:-50])
    with pytest.raises(CheckpointError, match="cut.pkl"):
        load_pickle(path)
    with pytest.raises(FileNotFoundError):
        load_pickle(tmp_path / "absent.pkl")


def test_allowed_globals_are_only_data_constructors():
    modules = {g.rsplit(".", 1)[0] for g in ALLOWED_GLOBALS}
    assert modules <= {
        "numpy",
        "numpy.core.multiarray",
        "numpy._core.multiarray",
        "numpy.core.numeric",
        "numpy._core.numeric",
        "builtins",
        "__builtin__",
        "collections",
        "_codecs",
    }
