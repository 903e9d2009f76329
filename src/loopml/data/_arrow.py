"""Arrow <-> NumPy on the ingest path, without pyarrow's pandas bridge.

pyarrow imports pandas (0.13 CPU-s, even when NumPy and pyarrow are loaded) on its
first ``to_numpy()``, ``pa.array()`` or ``pa.scalar()``; an ingest needs none of
pandas, so its hot path converts through the arrays' buffers instead.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def numbers(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of a fixed-width array without nulls (booleans, numbers, times) in NumPy.

    Integers, floats and temporal values come as integers or floats of their width
    (views when there is one chunk); booleans as a bool array.

    Raises:
        ValueError: the array holds nulls or is not fixed-width.
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = [_chunk(chunk) for chunk in chunks]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty(0, dtype=bool if pa.types.is_boolean(values.type) else _dtype(values.type))
    return np.concatenate(parts)


def _dtype(type_: pa.DataType) -> np.dtype:
    width = type_.bit_width // 8
    if pa.types.is_floating(type_):
        return np.dtype(f"<f{width}")
    if pa.types.is_unsigned_integer(type_):
        return np.dtype(f"<u{width}")
    if pa.types.is_integer(type_) or pa.types.is_temporal(type_):
        return np.dtype(f"<i{width}")
    raise ValueError(f"not a fixed-width number type: {type_}")


def _chunk(array: pa.Array) -> np.ndarray:
    if array.null_count:
        raise ValueError("the array holds nulls")
    if pa.types.is_boolean(array.type):
        return _bits(array, 1)
    dtype = _dtype(array.type)
    if not len(array):
        return np.empty(0, dtype=dtype)
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _bits(array: pa.Array, buffer: int) -> np.ndarray:
    """A bitmap buffer of ``array`` (0: validity, 1: boolean data) as a bool array."""
    if not len(array):
        return np.empty(0, dtype=bool)
    bitmap = np.frombuffer(array.buffers()[buffer], dtype=np.uint8)
    bits = np.unpackbits(bitmap, bitorder="little", count=array.offset + len(array))
    return bits[array.offset :].view(bool)


def mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean array as a NumPy mask, nulls as False."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = [
        _bits(chunk, 1) & _bits(chunk, 0) if chunk.null_count else _bits(chunk, 1)
        for chunk in chunks
    ]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype=bool)


def booleans(values: np.ndarray) -> pa.Array:
    """A NumPy bool array as an Arrow boolean array."""
    packed = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(packed)])


def int64s(values: np.ndarray) -> pa.Array:
    """A NumPy integer array as an Arrow int64 array."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def strings(values: list[str]) -> pa.Array:
    """Python strings as an Arrow string array."""
    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(item) for item in encoded], out=offsets[1:])
    large = pa.Array.from_buffers(
        pa.large_string(),
        len(encoded),
        [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
    )
    return large.cast(pa.string())


def string(value: str) -> pa.Scalar:
    """A Python string as an Arrow scalar."""
    return strings([value])[0]
