"""Model files: one ``.npz`` per model, arrays plus JSON metadata.

Writing goes through ``outputs.atomic_output`` (a temporary file beside the target,
renamed into place): an interrupted run never leaves a half-written model. Reading never unpickles; it checks
that the file is an archive, holds rnnlm metadata of a format version this code reads,
and that every array has the expected dtype and rank. Uncompressed members (what
``np.savez`` writes) are memory-mapped, so loading a large model costs next to nothing
until its pages are touched; rnnlm writes them aligned (``write_model``).
"""
from __future__ import annotations

import json
import os
import zipfile
from typing import Dict, Mapping, Tuple

import numpy as np

from rnnlm_cli.errors import ModelFileError
from rnnlm_cli.outputs import atomic_output

FORMAT_VERSION = 1
META_KEY = "__meta__"


def save_model(path: str, arrays: Mapping[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` and ``metadata`` to ``path`` atomically."""
    with atomic_output(path, "wb") as out:
        write_model(out, arrays, metadata)


def write_model(out, arrays: Mapping[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` and ``metadata`` as an ``.npz`` to the binary file ``out``:
    what ``np.savez`` writes, with each member's data starting on a page boundary."""
    metadata = dict(metadata, format_version=FORMAT_VERSION)
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(metadata, ensure_ascii=False).encode(), np.uint8)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in payload.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.extra = _alignment_padding(archive.fp.tell(), len(info.filename.encode()))
            with archive.open(info, "w", force_zip64=True) as stream:
                np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=False)


ALIGNMENT = 4096
_PADDING_ID = 0xD935   # the extra-field id Android's zipalign uses for the same padding


def _alignment_padding(header_start: int, name_size: int) -> bytes:
    """A zip extra field that makes a member's data start at a multiple of ``ALIGNMENT``.

    A memory-mapped array is then aligned: NumPy copies a misaligned array on every
    ``searchsorted`` (a whole n-gram table per call) and reads it by slower paths in
    every gather. The local header is 30 bytes, the name, this field, and the 20-byte
    zip64 field that ``force_zip64`` adds; NumPy pads each ``.npy`` header to a
    multiple of 64 bytes, so the array data stays 64-byte aligned after it.
    """
    fixed = header_start + 30 + name_size + 4 + 20
    padding = -fixed % ALIGNMENT
    return _PADDING_ID.to_bytes(2, "little") + padding.to_bytes(2, "little") + bytes(padding)


def load_model(path: str) -> Tuple[Dict[str, np.ndarray], dict]:
    """Read a model file: ``(arrays, metadata)``; raise ``ModelFileError`` if it is bad."""
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a directory")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename[:-4]: info for info in archive.infolist()
                       if info.filename.endswith(".npy")}
            if META_KEY not in members:
                raise ModelFileError(f"{path}: not an rnnlm model (no metadata in the archive)")
            metadata = _read_metadata(path, archive, members[META_KEY])
            arrays = {name: _read_member(path, archive, info)
                      for name, info in members.items() if name != META_KEY}
    except zipfile.BadZipFile:
        raise ModelFileError(f"{path}: not a model file (not an .npz archive, or truncated)") \
            from None
    except (EOFError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: truncated or corrupt ({exc})") from None
    return arrays, metadata


def check_arrays(path: str, arrays: Mapping[str, np.ndarray], schema: Mapping[str, Tuple[str, int]]):
    """Check that each ``name: (dtype kind codes, ndim)`` of ``schema`` is present and right."""
    for name, (kinds, ndim) in schema.items():
        if name not in arrays:
            raise ModelFileError(f"{path}: corrupt model: array '{name}' is missing")
        array = arrays[name]
        if array.dtype.kind not in kinds or array.ndim != ndim:
            raise ModelFileError(f"{path}: corrupt model: array '{name}' has dtype "
                                 f"{array.dtype} and shape {array.shape}")


def _read_metadata(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    raw = _read_member(path, archive, info)
    try:
        metadata = json.loads(bytes(np.asarray(raw)).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: corrupt model: metadata is not JSON") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("format_version"), int):
        raise ModelFileError(f"{path}: corrupt model: metadata has no format version")
    version = metadata["format_version"]
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path}: made by a newer rnnlm (format version {version}; "
                             f"this one reads up to {FORMAT_VERSION}): upgrade rnnlm")
    if version < 1:
        raise ModelFileError(f"{path}: corrupt model: format version {version}")
    return metadata


def _read_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One array of the archive, memory-mapped when stored uncompressed."""
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        if dtype.hasobject:
            raise ModelFileError(f"{path}: array '{info.filename[:-4]}' holds Python objects "
                                 "(pickled data); refused")
        header_size = stream.tell()
        if info.compress_type != zipfile.ZIP_STORED or fortran:
            return np.lib.format.read_array(archive.open(info), allow_pickle=False)
    start = info.header_offset + _local_header_size(archive, info) + header_size
    count = int(np.prod(shape)) if shape else 1
    if start + count * dtype.itemsize > os.path.getsize(path):
        raise ValueError(f"array '{info.filename[:-4]}' runs past the end of the file")
    if count == 0:
        return np.zeros(shape, dtype=dtype)
    # A plain ndarray view of the map: np.memmap's subclass hooks slow down every operation.
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape).view(np.ndarray)


def _local_header_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """Size of the zip local file header in front of a member's data."""
    archive.fp.seek(info.header_offset)
    header = archive.fp.read(30)
    if header[:4] != b"PK\x03\x04":
        raise ValueError("bad zip local header")
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return 30 + name_len + extra_len
