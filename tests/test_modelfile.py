"""Model files: round trip, atomic writes, and refusal of anything that is not ours."""
import json
import os
import stat

import numpy as np
import pytest

from rnnlm_cli.errors import ModelFileError
from rnnlm_cli.modelfile import FORMAT_VERSION, atomic_output, load_model, save_model


def test_round_trip_keeps_arrays_and_metadata(tmp_path):
    path = tmp_path / "m.npz"
    arrays = {"a": np.arange(5, dtype=np.float64), "b": np.array([[1, 2]], dtype=np.int32),
              "empty": np.zeros(0, dtype=np.uint64)}
    save_model(str(path), arrays, {"model_type": "test", "note": "Việt"})
    loaded, meta = load_model(str(path))
    assert meta == {"model_type": "test", "note": "Việt", "format_version": FORMAT_VERSION}
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)
    assert type(loaded["a"]) is np.ndarray        # memory-mapped, but a plain ndarray


def test_members_are_aligned_and_the_file_is_a_standard_npz(tmp_path):
    """Each array's data starts 64-byte aligned (a misaligned memory map makes NumPy copy
    it in every searchsorted); the archive stays what np.load and zip tools read."""
    import zipfile
    path = tmp_path / "m.npz"
    arrays = {"x" * k: np.arange(k + 1, dtype=np.uint64) for k in range(1, 40, 7)}
    arrays["odd"] = np.arange(3, dtype=np.uint8)     # a 3-byte member before the next one
    arrays["after"] = np.arange(9, dtype=np.float32)
    save_model(str(path), arrays, {"m": 1})
    loaded, _ = load_model(str(path))
    for key, value in arrays.items():
        assert loaded[key].ctypes.data % 64 == 0 and loaded[key].flags.aligned, key
        np.testing.assert_array_equal(loaded[key], value)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    with np.load(path, allow_pickle=False) as plain:
        np.testing.assert_array_equal(plain["after"], arrays["after"])


def test_written_file_has_ordinary_permissions(tmp_path):
    path = tmp_path / "m.npz"
    save_model(str(path), {"a": np.zeros(1)}, {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "m.npz"
    save_model(str(path), {"a": np.zeros(3)}, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(str(path), "wb") as out:
            out.write(b"half a model")
            raise KeyboardInterrupt
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def rewrite_meta(path, change):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    change(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format_version=FORMAT_VERSION + 1),
     f"made by a newer rnnlm (format version {FORMAT_VERSION + 1}; this one reads up to "
     f"{FORMAT_VERSION}): upgrade rnnlm"),
    (lambda m: m.pop("format_version"), "corrupt model: metadata has no format version"),
])
def test_bad_metadata_is_refused(tmp_path, change, message):
    path = tmp_path / "m.npz"
    save_model(str(path), {"a": np.zeros(1)}, {})
    rewrite_meta(path, change)
    with pytest.raises(ModelFileError) as error:
        load_model(str(path))
    assert str(error.value) == f"{path}: {message}"


class Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_objects_are_refused_not_executed(tmp_path):
    path, marker = tmp_path / "m.npz", tmp_path / "pwned"
    save_model(str(path), {"a": np.zeros(1)}, {})
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["a"] = np.array([Marker(str(marker))], dtype=object)
    np.savez(path, **arrays)
    assert not marker.exists()
    with pytest.raises(ModelFileError, match="holds Python objects"):
        load_model(str(path))
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "m.npz"
    save_model(str(path), {"a": np.arange(1000.0)}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not an .npz archive, or truncated"):
        load_model(str(path))
    np.savez(path, x=np.zeros(2))
    with pytest.raises(ModelFileError, match="not an rnnlm model"):
        load_model(str(path))
