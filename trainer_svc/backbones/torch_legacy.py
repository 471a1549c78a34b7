"""Read PyTorch checkpoint files into NumPy arrays without importing torch.

Two layouts exist:

* the **legacy** format (``torch.save(..., _use_new_zipfile_serialization=False)``, and every file
  written before torch 1.6): five pickles in a row: magic number, protocol version, system info,
  the object itself, then the list of storage keys, followed by the raw bytes of each storage
  in that order, each preceded by its element count as a little-endian int64;
* the **zip** format (torch ≥ 1.6): ``<name>/data.pkl`` plus one ``<name>/data/<key>`` file of raw
  bytes per storage.

In both, tensors are pickled as calls to ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, …)`` and storages as *persistent ids*. The unpickler here resolves only that small set of
globals (tensors, storages, ``OrderedDict``) and refuses everything else, so a hostile checkpoint
cannot run code. Tensors come back as contiguous NumPy arrays that own their data.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tfic.errors import InvalidArgument

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(InvalidArgument):
    """A file that is not a PyTorch checkpoint this reader understands."""

    reason = "invalid_checkpoint"


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


class _Storage:
    """A storage whose bytes arrive after the pickle (legacy) or from a zip member."""

    def __init__(self, key: str, dtype: np.dtype[Any], numel: int) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray[Any, Any] | None = None


@dataclass(frozen=True)
class _StorageView:
    root: _Storage
    offset: int  # in elements
    numel: int


@dataclass(frozen=True)
class _LazyTensor:
    view: _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray[Any, Any]:
        data = self.view.root.data
        if data is None:
            raise CheckpointError(f"checkpoint has no data for storage {self.view.root.key!r}")
        if any(n < 0 for n in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise CheckpointError("checkpoint tensor with a negative size, stride or offset")
        start = self.view.offset + self.offset
        if 0 in self.size:
            return np.zeros(self.size, dtype=self.view.root.dtype)
        last = start + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= self.view.offset + self.view.numel or last >= data.size:
            raise CheckpointError(f"checkpoint tensor reaches past the end of storage {self.view.root.key!r}")
        itemsize = data.dtype.itemsize
        strided = np.lib.stride_tricks.as_strided(
            data[start:], shape=self.size, strides=tuple(s * itemsize for s in self.stride), writeable=False
        )
        return np.array(strided, dtype=data.dtype.newbyteorder("="), order="C", copy=True)


def _rebuild_tensor_v2(
    storage: _StorageView,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _LazyTensor:
    if not isinstance(storage, _StorageView):
        raise CheckpointError("checkpoint tensor without a storage")
    if len(size) != len(stride):
        raise CheckpointError("checkpoint tensor whose size and stride differ in length")
    return _LazyTensor(storage, int(storage_offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, requires_grad: bool = False, backward_hooks: Any = None) -> Any:
    return data


def _rebuild_parameter_with_state(data: Any, requires_grad: bool, backward_hooks: Any, state: Any) -> Any:
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], storages: dict[str, _Storage], legacy: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self._storages = storages
        self._legacy = legacy

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch._utils" and name == "_rebuild_parameter_with_state":
            return _rebuild_parameter_with_state
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which this reader does not load")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unexpected persistent id in checkpoint: {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise CheckpointError(f"unsupported persistent id kind {kind!r} in checkpoint")
        if self._legacy:
            # ('storage', storage_type, root_key, location, numel, view_metadata)
            storage_type, key, _location, numel, view_metadata = pid[1:6]
        else:
            # ('storage', storage_type, key, location, numel)
            storage_type, key, _location, numel = pid[1:5]
            view_metadata = None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type in checkpoint: {storage_type!r}")
        key = str(key)
        root = self._storages.get(key)
        if root is None:
            root = _Storage(key, storage_type.dtype, int(numel))
            self._storages[key] = root
        if view_metadata is not None:
            _view_key, offset, view_size = view_metadata
            return _StorageView(root, int(offset), int(view_size))
        return _StorageView(root, 0, root.numel)


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


class _SafeHeaderUnpickler(pickle.Unpickler):
    """For the header pickles and the key list: builtins only, no globals at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise CheckpointError(f"unexpected global {module}.{name} in checkpoint header")


def _load_legacy(f: IO[bytes]) -> Any:
    magic = _SafeHeaderUnpickler(f).load()
    if magic != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    protocol = _SafeHeaderUnpickler(f).load()
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointError(f"unsupported legacy checkpoint protocol {protocol!r}")
    sys_info = _SafeHeaderUnpickler(f).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointError("big-endian legacy checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = _Unpickler(f, storages, legacy=True).load()
    keys = _SafeHeaderUnpickler(f).load()
    if not isinstance(keys, list):
        raise CheckpointError("legacy checkpoint without a storage key list")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointError(f"legacy checkpoint lists unknown storage {key!r}")
        header = f.read(8)
        if len(header) != 8:
            raise CheckpointError("legacy checkpoint truncated (storage header)")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise CheckpointError(f"storage {key!r} holds {numel} elements, the pickle says {storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise CheckpointError("legacy checkpoint truncated (storage data)")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _materialize(result)


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if pkl is None:
            raise CheckpointError(f"{path.name}: zip file without <name>/data.pkl; not a torch.save checkpoint")
        prefix = pkl[: -len("data.pkl")]
        byteorder_name = prefix + "byteorder"
        if byteorder_name in names and archive.read(byteorder_name).strip() not in (b"little", b""):
            raise CheckpointError("big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}
        result = _Unpickler(io.BytesIO(archive.read(pkl)), storages, legacy=False).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            try:
                raw = archive.read(member)
            except KeyError as exc:
                raise CheckpointError(f"checkpoint lacks the data of storage {key!r}") from exc
            if len(raw) < storage.numel * storage.dtype.itemsize:
                raise CheckpointError(f"checkpoint storage {key!r} is truncated")
            storage.data = np.frombuffer(raw, dtype=storage.dtype, count=storage.numel)
    return _materialize(result)


def load(path: str | Path) -> Any:
    """The object saved in a ``torch.save`` file, with tensors as NumPy arrays."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with path.open("rb") as f:
            return _load_legacy(f)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as exc:
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({exc})") from exc


def load_state_dict(path: str | Path) -> dict[str, np.ndarray[Any, Any]]:
    """A ``state_dict`` (name → array), also when it is nested under a ``"state_dict"`` key."""
    obj = load(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    ):
        raise CheckpointError(f"{Path(path).name}: checkpoint is not a state dict of tensors")
    return dict(obj)


__all__ = ["CheckpointError", "load", "load_state_dict"]
