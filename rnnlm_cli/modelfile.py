"""Model files: one ``.npz`` per model, arrays plus JSON metadata (docs/model-format.md).

Writing goes through ``outputs.atomic_output`` (a temporary file beside the target,
renamed into place): an interrupted run never leaves a half-written model. Reading never
unpickles; it checks that the file is an archive, holds rnnlm metadata of a format
version this code reads, and that every array has the expected dtype and rank.
Uncompressed members (what ``np.savez`` writes) are memory-mapped, so loading a large
model costs next to nothing until its pages are touched; rnnlm writes them aligned
(``write_model``).

A model file may come from anyone, so reading is bounded by the file: only a regular
file is opened (a FIFO or a device would block or never end); each member's ``.npy``
header must account for the member's size exactly, so a claimed shape allocates
nothing; compressed members may not claim more than ``INFLATE_RATIO`` times the file in
all (zip bombs); metadata is read up to ``METADATA_LIMIT`` bytes; encrypted members and
compression methods other than stored and deflated (all that NumPy writes) are refused.

CRCs. A deflated member is read whole, and ``zipfile`` checks its CRC-32 on the way. A
stored member is mapped, not read, and its CRC is *not* checked at load: that takes a
read of the whole file (0.18 to 0.3 s for a 260 MB order-5 model, whose whole
``perplexity`` run over a 2.6 MB test set takes 0.45 s; on a cold cache, a read from
disk of every page of a model of which ``complete`` would touch a few). ``rnnlm check``
(``verify_archive``) reads every member and checks every CRC; at load each backend
checks the structural invariants that keep it from reading out of bounds
(``models.py``, ``ngram/invariants.py``). A small file is read into memory anyway (below),
but its CRCs are left to ``check`` as well, so that what loads does not depend on size.

Rewrites under a running process. rnnlm replaces a model by renaming a new file over
it, so a process that mapped the old one keeps the old inode, intact. A file rewritten
in place instead (``cp other.npz model.npz``, ``> model.npz``) changes under the
mapping, and reading a page past its new end kills the process with SIGBUS, which no
Python handler can catch (it would run only after the faulting instruction, which
faults again). So files up to ``READ_LIMIT`` are read into memory, where nothing can
change them (about 1 ms per MB, 50 ms at the limit, where a map costs nothing until
touched); larger ones are mapped, and rewriting one in place under a running
``complete`` could kill it ("Bus error"): ``complete`` and ``generate`` check before each
line that no mapped file was rewritten (``check_mapped_files``) and stop with an error
if one was. (Within one line's work the window stays open: replace large models by
renaming, as rnnlm does.)
"""
from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
import zlib
from contextlib import contextmanager
from tokenize import TokenError
from typing import Dict, Mapping, Tuple

import numpy as np

from rnnlm_cli.errors import ModelFileError
from rnnlm_cli.outputs import atomic_output

FORMAT_VERSION = 1
META_KEY = "__meta__"
READ_LIMIT = 64 << 20       # files up to this size are read into memory, larger ones mapped
METADATA_LIMIT = 4 << 20    # bytes of JSON metadata read at most
INFLATE_RATIO = 32          # compressed members may inflate to this many times the file


def save_model(path: str, arrays: Mapping[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` and ``metadata`` to ``path`` atomically."""
    with atomic_output(path, "wb") as out:
        write_model(out, arrays, metadata)


def write_model(out, arrays: Mapping[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` and ``metadata`` as an ``.npz`` to the binary file ``out``:
    what ``np.savez`` writes, with each member's data starting on a page boundary.

    An array too large for memory may be given as a *chunked array*, an object with a
    ``dtype``, a one-dimensional ``shape`` and a ``chunks()`` method yielding its values in
    order (a table on disk): its member is written a chunk at a time, the same bytes the
    whole array would give."""
    metadata = dict(metadata, format_version=FORMAT_VERSION)
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(metadata, ensure_ascii=False).encode(), np.uint8)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in payload.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.extra = _alignment_padding(archive.fp.tell(), len(info.filename.encode()))
            with archive.open(info, "w", force_zip64=True) as stream:
                if hasattr(array, "chunks"):
                    _write_chunked(stream, array)
                else:
                    np.lib.format.write_array(stream, np.asanyarray(array), allow_pickle=False)


def _write_chunked(stream, array) -> None:
    """A chunked array as ``np.lib.format.write_array`` writes the whole one."""
    np.lib.format.write_array_header_1_0(stream, {
        "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
        "shape": tuple(array.shape)})
    for chunk in array.chunks():      # (its bytes as they are: tobytes would copy them)
        stream.write(np.ascontiguousarray(chunk, dtype=array.dtype).reshape(-1).view(np.uint8))


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
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        try:
            # A small file is read whole: the arrays are then views of memory the process
            # owns, which a later rewrite of the file cannot pull away (see the docstring).
            source = _read_whole(path, file, size) if size <= READ_LIMIT else file
            if source is file:
                _mapped[path] = _stamp(os.fstat(file.fileno()))
            # (The zip structure is read from the file; the data of the arrays, from the
            # buffer if there is one.)
            with zipfile.ZipFile(file) as archive:
                members = _members(path, archive, size)
                metadata = _read_metadata(path, archive, members.pop(META_KEY), source, size)
                arrays = {name: _read_member(path, archive, info, source, size)
                          for name, info in members.items()}
        except zipfile.BadZipFile:
            raise ModelFileError(f"{path}: not a model file (not an .npz archive, or "
                                 "truncated)") from None
        except (EOFError, OSError, ValueError, zlib.error) as exc:
            raise ModelFileError(f"{path}: truncated or corrupt ({exc})") from None
        except NotImplementedError as exc:     # (a zip feature or version zipfile lacks)
            raise ModelFileError(f"{path}: corrupt model or foreign archive ({exc})") from None
    return arrays, metadata


_mapped: Dict[str, tuple] = {}   # path -> _stamp of each file this process has mapped


def _stamp(status: os.stat_result) -> tuple:
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def check_mapped_files() -> None:
    """``ModelFileError`` if a model file this process maps was rewritten in place since it
    was loaded (same file, other size or time): reading on could die of SIGBUS, or read a
    mix of two models. A file replaced by a rename (a new inode) is no concern: the map
    keeps the old one. ``complete`` and ``generate`` ask before each line they answer."""
    for path, stamp in _mapped.items():
        try:
            now = _stamp(os.stat(path))
        except OSError:
            continue   # removed or renamed away: the map keeps the file it had
        if now[:2] == stamp[:2] and now != stamp:
            raise ModelFileError(f"{path}: rewritten in place while in use (replace a model "
                                 "by renaming a new file over it); start again to read "
                                 "the new one")


def verify_archive(path: str) -> int:
    """Read every member of the archive at ``path`` to its end, which makes ``zipfile``
    compare its CRC-32 with the one the archive records: the check ``load_model`` leaves
    out (see the module docstring). Returns the number of members."""
    with open_regular(path) as file:
        try:
            with zipfile.ZipFile(file) as archive:
                for info in archive.infolist():
                    _check_method(path, info)
                    with archive.open(info) as stream:
                        while stream.read(1 << 22):
                            pass
                return len(archive.infolist())
        except zipfile.BadZipFile as exc:
            raise ModelFileError(f"{path}: corrupt archive: {exc}") from None
        except (EOFError, OSError, ValueError, zlib.error) as exc:
            raise ModelFileError(f"{path}: truncated or corrupt ({exc})") from None
        except NotImplementedError as exc:     # (a zip feature or version zipfile lacks)
            raise ModelFileError(f"{path}: corrupt model or foreign archive ({exc})") from None


@contextmanager
def open_regular(path: str):
    """``path`` opened for reading, if it is a regular file. Opening does not wait (a FIFO
    opened for reading would block until a writer came); the type is checked on the open
    file, so a file swapped for a FIFO after a ``stat`` is caught as well."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ModelFileError(f"{path}: is a directory")
        raise ModelFileError(f"{path}: not a regular file (a device, FIFO or socket); "
                             "a model must be a file")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as file:
        yield file


def _read_whole(path: str, file, size: int) -> memoryview:
    """The file's bytes, in a buffer whose start is 64-byte aligned (so that the arrays
    rnnlm aligns in the file are aligned in memory too)."""
    buffer = np.empty(size + 64, dtype=np.uint8)
    skip = -buffer.ctypes.data % 64
    view = memoryview(buffer[skip:skip + size])
    got = file.readinto(view)
    if got != size:
        raise ModelFileError(f"{path}: changed while it was read")
    return view


def _members(path: str, archive: zipfile.ZipFile, size: int) -> Dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members by array name, each checked before any of its data is read:
    a known compression method, no encryption, and (together) no more uncompressed data
    than ``INFLATE_RATIO`` times the file holds."""
    members: Dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[:-4]
        if name in members:
            raise ModelFileError(f"{path}: corrupt model: array '{name}' is stored twice")
        _check_method(path, info)
        members[name] = info
    if META_KEY not in members:
        raise ModelFileError(f"{path}: not an rnnlm model (no metadata in the archive)")
    inflated = sum(info.file_size for info in members.values()
                   if info.compress_type != zipfile.ZIP_STORED)
    if inflated > INFLATE_RATIO * size:
        raise ModelFileError(f"{path}: corrupt model: its compressed arrays claim {inflated} "
                             f"bytes, more than {INFLATE_RATIO} times the file's {size} "
                             "(a zip bomb?); refused")
    return members


def _check_method(path: str, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{path}: member '{info.filename}' is encrypted; refused")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(f"{path}: member '{info.filename}' uses compression method "
                             f"{info.compress_type} (only stored and deflated are read)")


def check_arrays(path: str, arrays: Mapping[str, np.ndarray],
                 schema: Mapping[str, Tuple[str, int]]):
    """Check that each ``name: (dtype kind codes, ndim)`` of ``schema`` is present and right."""
    for name, (kinds, ndim) in schema.items():
        if name not in arrays:
            raise ModelFileError(f"{path}: corrupt model: array '{name}' is missing")
        array = arrays[name]
        if array.dtype.kind not in kinds or array.ndim != ndim:
            raise ModelFileError(f"{path}: corrupt model: array '{name}' has dtype "
                                 f"{array.dtype} and shape {array.shape}")


def _read_metadata(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                   source, size: int) -> dict:
    if info.file_size > METADATA_LIMIT:
        raise ModelFileError(f"{path}: corrupt model: metadata of {info.file_size} bytes "
                             f"(at most {METADATA_LIMIT // (1 << 20)} MB is read)")
    raw = _read_member(path, archive, info, source, size)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: corrupt model: metadata is not text")
    try:
        metadata = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # (ValueError: bad JSON, or a number of thousands of digits; RecursionError:
        # arrays or objects nested thousands deep.)
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


def _read_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                 source, size: int) -> np.ndarray:
    """One array of the archive: a view of the file's bytes (``source`` is a buffer) or
    of a memory map of it (``source`` is the open file) when stored uncompressed, else
    inflated. The ``.npy`` header is checked against the member first: the shape and
    dtype it declares must account for the member's size exactly, so neither a claimed
    shape nor a claimed uncompressed size can make loading allocate more than the file
    (times ``INFLATE_RATIO``) holds."""
    name = info.filename[:-4]
    if info.compress_type != zipfile.ZIP_STORED:
        try:
            with archive.open(info) as stream:
                shape, fortran, dtype = _read_header(path, name, stream)
                nbytes = _data_size(path, name, info, stream.tell(), shape, dtype)
                data = stream.read(nbytes + 1)  # to the end: zipfile then checks the CRC
        except zipfile.BadZipFile as exc:
            raise ModelFileError(f"{path}: corrupt model: {exc}") from None
        if len(data) != nbytes:
            raise ValueError(f"array '{name}' is truncated")
        return _shaped(np.frombuffer(data, dtype=dtype), shape, fortran)
    # The header of a stored member is read here, not through zipfile, which would read
    # (and CRC-check) a small member whole: CRCs are for ``verify_archive`` alone.
    start = info.header_offset + _local_header_size(archive, info)
    archive.fp.seek(start)
    head = io.BytesIO(archive.fp.read(min(info.file_size, HEADER_READ)))
    shape, fortran, dtype = _read_header(path, name, head)
    nbytes = _data_size(path, name, info, head.tell(), shape, dtype)
    if info.compress_size != info.file_size:
        raise ModelFileError(f"{path}: corrupt model: stored member '{info.filename}' has "
                             "two sizes")
    start += head.tell()
    if start + nbytes > size:
        raise ValueError(f"array '{name}' runs past the end of the file")
    if nbytes == 0:
        return np.zeros(shape, dtype=dtype)
    if isinstance(source, memoryview):
        flat = np.frombuffer(source, dtype=dtype, count=nbytes // dtype.itemsize, offset=start)
        return _shaped(flat, shape, fortran)
    # A plain ndarray view of the map: np.memmap's subclass hooks slow down every operation.
    return np.memmap(source, dtype=dtype, mode="r", offset=start, shape=shape,
                     order="F" if fortran else "C").view(np.ndarray)


HEADER_READ = 1 << 16     # bytes read for a .npy header (NumPy reads at most 10,000)


def _data_size(path: str, name: str, info: zipfile.ZipInfo, header_size: int, shape: tuple,
               dtype: np.dtype) -> int:
    """Bytes of the array the header declares, which must be the rest of the member."""
    nbytes = math.prod(shape) * dtype.itemsize
    if header_size + nbytes != info.file_size:
        raise ModelFileError(f"{path}: corrupt model: array '{name}' claims shape {shape} "
                             f"of {dtype} ({nbytes} bytes), but its member holds "
                             f"{info.file_size - header_size}")
    return nbytes


ARRAY_KINDS = "biuf"      # what model files hold: no objects, strings, records or dates


def _read_header(path: str, name: str, stream) -> tuple:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` header at the start of
    ``stream``, refusing every dtype a model file never holds."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except (SyntaxError, TokenError, RecursionError, TypeError) as exc:
        # (NumPy parses the header as a Python literal: these escape its ValueErrors.)
        raise ModelFileError(f"{path}: corrupt model: array '{name}' has a bad .npy "
                             f"header ({type(exc).__name__})") from None
    if dtype.hasobject:
        raise ModelFileError(f"{path}: array '{name}' holds Python objects (pickled data); "
                             "refused")
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ModelFileError(f"{path}: corrupt model: array '{name}' has dtype {dtype}")
    if any(size < 0 for size in shape):
        raise ModelFileError(f"{path}: corrupt model: array '{name}' has shape {shape}")
    return shape, fortran, dtype


def _shaped(flat: np.ndarray, shape: tuple, fortran: bool) -> np.ndarray:
    return flat.reshape(shape, order="F" if fortran else "C")


def _local_header_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """Size of the zip local file header in front of a member's data."""
    archive.fp.seek(info.header_offset)
    header = archive.fp.read(30)
    if header[:4] != b"PK\x03\x04":
        raise ValueError("bad zip local header")
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return 30 + name_len + extra_len
