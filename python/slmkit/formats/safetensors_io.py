"""Memory-mapped reading of .safetensors files (zero copy), and atomic writing.

Reading is ours because the safetensors package copies tensors and has no numpy bf16; writing
goes through the safetensors package. Layout: u64 header length, JSON header, raw data.
"""
from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

from ..errors import ModelFormatError

# safetensors dtype -> (numpy dtype of the raw values, slmkit storage type or None)
DTYPES = {
    "F32": (np.float32, "f32"), "F16": (np.float16, "f16"), "BF16": (np.uint16, "bf16"),
    "F64": (np.float64, None), "I64": (np.int64, None), "I32": (np.int32, None),
    "I16": (np.int16, None), "I8": (np.int8, None), "U8": (np.uint8, None),
    "U16": (np.uint16, None), "U32": (np.uint32, None), "BOOL": (np.bool_, None),
}


class SafetensorsFile:
    """Tensors of one .safetensors file, as read-only numpy views of a memory map."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise ModelFormatError(f"{self.path}: cannot read ({e})") from None
        size = len(self._map)
        if size < 8:
            raise ModelFormatError(f"{self.path}: truncated safetensors file ({size} bytes)")
        (header_len,) = struct.unpack("<Q", self._map[:8])
        if header_len > size - 8 or header_len > 100_000_000:
            raise ModelFormatError(f"{self.path}: corrupt safetensors header (length {header_len} "
                                   f"in a {size}-byte file)")
        try:
            header = json.loads(bytes(self._map[8:8 + header_len]))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFormatError(f"{self.path}: corrupt safetensors header ({e})") from None
        self.metadata = header.pop("__metadata__", None) or {}
        self._entries = header
        self._data_start = 8 + header_len
        self._buffer = np.frombuffer(self._map, dtype=np.uint8)
        for name, entry in header.items():
            start, end = entry["data_offsets"]
            if end > size - self._data_start or start > end:
                raise ModelFormatError(f"{self.path}: tensor {name!r} lies past the end of the file "
                                       f"(file truncated?)")

    def keys(self):
        return self._entries.keys()

    def dtype(self, name: str) -> str:
        return self._entries[name]["dtype"]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entries[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        entry = self._entries[name]
        if entry["dtype"] not in DTYPES:
            raise ModelFormatError(f"{self.path}: tensor {name!r} has unsupported dtype {entry['dtype']}")
        np_dtype = DTYPES[entry["dtype"]][0]
        start, end = entry["data_offsets"]
        raw = self._buffer[self._data_start + start:self._data_start + end]
        shape = tuple(entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        if raw.nbytes != count * np.dtype(np_dtype).itemsize:
            raise ModelFormatError(f"{self.path}: tensor {name!r} {entry['dtype']}{list(shape)} "
                                   f"holds {raw.nbytes} bytes")
        return raw.view(np_dtype).reshape(shape)


def save_safetensors(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None):
    """Write tensors to path (the caller makes the whole output atomic)."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)
