"""Helpers that build damaged and hostile model files for the tests of untrusted models."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path
from typing import Dict

import numpy as np

from rnnlm_cli.modelfile import save_model

SMALL_CORPUS = (
    "The cat sat on the mat.\n"
    "The dog sat on the log.\n"
    "A cat and a dog met on the mat.\n"
    "The train leaves at noon.\n"
    "The dog likes the cat.\n"
)
TEXT = "The cat sat on the log.\nA dog met the train.\n"


def members(path) -> Dict[str, bytes]:
    """Each member's name and uncompressed bytes (the whole ``.npy``), in archive order."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_zip(path, contents: Dict[str, bytes], method=zipfile.ZIP_STORED) -> Path:
    """An archive of ``contents`` (name -> bytes), each member compressed by ``method``."""
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in contents.items():
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data,
                             compress_type=method)
    return Path(path)


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
    return out.getvalue()


def npy_claiming(shape: tuple, dtype: str, data: bytes) -> bytes:
    """A ``.npy`` whose header claims ``shape`` and ``dtype``, followed by ``data``."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue() + data


def arrays_and_metadata(path):
    """A saved model's arrays (as copies) and metadata, to edit and save again."""
    from rnnlm_cli.modelfile import load_model
    arrays, metadata = load_model(str(path))
    metadata = dict(metadata)
    metadata.pop("format_version")
    return {name: np.array(value) for name, value in arrays.items()}, metadata


def resave(source, target, edit) -> Path:
    """``source`` saved again at ``target`` after ``edit(arrays, metadata)``."""
    arrays, metadata = arrays_and_metadata(source)
    edit(arrays, metadata)
    save_model(str(target), arrays, metadata)
    return Path(target)


def patch_member_headers(data: bytes, name: str, local_offset: int, central_offset: int,
                         fmt: str, value: int) -> bytes:
    """``data`` (a whole archive) with a field of ``name``'s local and central headers set
    to ``value`` (``fmt``: struct format, at those offsets into each header)."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, offset, name_at in ((b"PK\x03\x04", local_offset, 30),
                                       (b"PK\x01\x02", central_offset, 46)):
        start = 0
        while True:
            start = out.find(signature, start)
            assert start >= 0, (signature, name)
            if out[start + name_at:start + name_at + len(encoded)] == encoded:
                break
            start += 4
        struct.pack_into(fmt, out, start + offset, value)
    return bytes(out)


def set_flag_bits(data: bytes, name: str, flags: int) -> bytes:
    return patch_member_headers(data, name, 6, 8, "<H", flags)


def set_method(data: bytes, name: str, method: int) -> bytes:
    return patch_member_headers(data, name, 8, 10, "<H", method)


def set_crc(data: bytes, name: str, crc: int) -> bytes:
    return patch_member_headers(data, name, 14, 16, "<I", crc)
