"""A stricter, faster reader for torch checkpoints: tensors come back as numpy arrays.

``torch.load(weights_only=True)`` runs a pure-Python unpickler (about 5 ms for a 40 KB zoo
checkpoint, most of it on the optimizer state).  This reader runs Python's C unpickler
with an allow-list *narrower* than torch's weights-only list:

* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor``, mapped to our own function
  that records (storage, offset, shape, stride) and calls nothing from torch;
* ``collections.OrderedDict``;
* the typed storage names (``torch.FloatStorage`` ...), mapped to numpy dtypes.

Any other global (``os.system``, ``builtins.eval``, a numpy reconstructor, a torch
class) stops unpickling with :class:`StrictLoadUnsupported` before anything runs, as
does a legacy (non-zip) file, a big-endian file, or a dtype numpy cannot hold.  The caller
then falls back to ``torch.load(weights_only=True)``; either way nothing in the file is
executed.  Tensor views are bounds-checked against their storage before any strided view
is made, so a crafted offset or stride cannot read outside the file's bytes.

Only the tensors the caller asks for (``materialize``) are read from the archive, each
through a bounded read of exactly its storage's declared size (a storage entry whose
bytes inflate past that is refused, as is one with extra bytes), and
:func:`declared_size` lets a caller refuse an archive whose entries declare more than a
budget before anything is decompressed: a 2 MB file cannot make the reader hold 2 GB.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def declared_size(path: str) -> int:
    """Bytes the file would take once read: the sum of its zip entries' declared uncompressed
    sizes, or the file's own size when it is not a zip archive (legacy torch files are not
    compressed)."""
    import os

    try:
        with zipfile.ZipFile(path) as zf:
            return sum(max(info.file_size, 0) for info in zf.infolist())
    except zipfile.BadZipFile:
        return os.path.getsize(path)


class StrictLoadUnsupported(Exception):
    """The file uses something this reader does not allow; use the weights-only loader instead."""


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: Any
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    """A tensor not yet read: where its values are, and its shape."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def numel(self) -> int:
        out = 1
        for s in self.shape:
            out *= s
        return out


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> LazyTensor:
    if not isinstance(storage, _Storage):
        raise StrictLoadUnsupported("a tensor whose storage is not a plain typed storage")
    if not all(isinstance(v, int) for v in (offset, *size, *stride)):
        raise StrictLoadUnsupported("a tensor with non-integer geometry")
    return LazyTensor(storage, int(offset), tuple(size), tuple(stride))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): name for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise StrictLoadUnsupported(f"global {module}.{name} is not on the allow-list") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise StrictLoadUnsupported(f"unexpected persistent id {pid!r:.60}")
        _, kind, key, _location, numel = pid
        if kind not in _STORAGE_DTYPES or not isinstance(key, str) or not isinstance(numel, int):
            raise StrictLoadUnsupported(f"storage type {kind!r} is not supported")
        return _Storage(key, _STORAGE_DTYPES[kind], numel)


class Checkpoint:
    """An opened checkpoint archive: the unpickled object with :class:`LazyTensor` leaves."""

    def __init__(self, path: str) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise StrictLoadUnsupported("not a zip-format torch file") from exc
        names = self._zip.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise StrictLoadUnsupported("no single data.pkl in the archive")
        self._prefix = pkl[0][: -len("data.pkl")]
        order = self._prefix + "byteorder"
        if order in names and self._zip.read(order).strip() != b"little":
            raise StrictLoadUnsupported("big-endian checkpoint")
        try:
            self.obj = _Unpickler(io.BytesIO(self._zip.read(pkl[0]))).load()
        except StrictLoadUnsupported:
            raise
        except Exception as exc:  # malformed pickle stream: let the reference loader say why
            raise StrictLoadUnsupported(f"unreadable pickle: {exc}") from exc

    def materialize(self, tensor: LazyTensor) -> np.ndarray:
        """The tensor's values (a read-only array), after checking they lie inside its storage.

        The storage entry is read with a bound of its declared size: it must hold exactly
        ``numel * itemsize`` bytes, neither fewer nor more.
        """
        st = tensor.storage
        itemsize = np.dtype(st.dtype).itemsize
        want = st.numel * itemsize
        name = f"{self._prefix}data/{st.key}"
        if self._zip.getinfo(name).file_size != want:
            raise ValueError(f"storage {st.key} declares {self._zip.getinfo(name).file_size} bytes, "
                             f"its tensor needs {want}")
        with self._zip.open(name) as fh:
            raw = fh.read(want + 1)
        if len(raw) != want:
            raise ValueError(f"storage {st.key} holds {'more than ' if len(raw) > want else ''}{min(len(raw), want)} "
                             f"bytes, expected {want}")
        buf = np.frombuffer(raw, dtype=st.dtype, count=st.numel)
        if tensor.numel() == 0:
            return np.empty(tensor.shape, dtype=st.dtype)
        if tensor.offset < 0 or any(s < 0 for s in tensor.stride) or any(n < 0 for n in tensor.shape):
            raise ValueError("negative offset, stride or size")
        last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride, strict=True))
        if last >= st.numel or len(tensor.stride) != len(tensor.shape):
            raise ValueError(f"tensor view reaches element {last} of a {st.numel}-element storage")
        strides = tuple(s * itemsize for s in tensor.stride)
        return np.lib.stride_tricks.as_strided(buf[tensor.offset:], tensor.shape, strides, writeable=False)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
