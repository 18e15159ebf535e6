"""Numba's disk cache of compiled kernels, made a cache: a damaged entry is a miss, never an error.

Numba's own loader unpickles its index and data files as they are, so a truncated, emptied or
overwritten file ends every later run in an UnpicklingError or EOFError. Here each file is framed
with a tag and a CRC-32 of its pickle; a file that is damaged in any way (cut short, garbage, of size
zero, unreadable, a folder where a file should be) is removed and its kernel compiled again, with one
note. A cache folder that cannot be written (read-only, full, under /proc) leaves the kernels
compiled in memory, with one note. Only numba.config.CACHE_DIR is used, never Numba's fallbacks
(the install folder's __pycache__, ~/.cache/numba). Not a place for compile options: that is jit.py.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import zlib

from numba.core import caching, config

from rnncli.base import paths

TAG = b"rnncli-kernel-cache\x01"


class Damaged(Exception):
    """A cache file that cannot be what was written there."""

    def __init__(self, path: str, why: str):
        super().__init__(f"{os.path.basename(path)}: {why}")
        self.path = path


def framed(payload: bytes) -> bytes:
    return TAG + struct.pack("<I", zlib.crc32(payload)) + payload


def unframed(path: str) -> bytes:
    """The pickle a cache file holds; FileNotFoundError when there is none, Damaged when it is not whole."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise
    except OSError as e:  # a folder, a file this user cannot read
        raise Damaged(path, e.strerror or str(e)) from None
    head = len(TAG) + 4
    if len(blob) < head or not blob.startswith(TAG):
        raise Damaged(path, "not a kernel cache file" if blob else "empty")
    if struct.unpack("<I", blob[len(TAG) : head])[0] != zlib.crc32(blob[head:]):
        raise Damaged(path, "cut short or overwritten (its checksum differs)")
    return blob[head:]


class _Files(caching.IndexDataCacheFile):
    """Numba's index (signature -> data file) and data files, each framed; the index holds the Numba
    version and the source stamp beside its entries, and entries of another version or source are
    ignored (and overwritten), as Numba does."""

    def _load_index(self):
        try:
            version, stamp, overloads = pickle.loads(unframed(self._index_path))
        except FileNotFoundError:
            return {}
        return overloads if (version, stamp) == (self._version, self._source_stamp) else {}

    def _save_index(self, overloads):
        self._write(self._index_path, (self._version, self._source_stamp, overloads))

    def _load_data(self, name):
        path = self._data_path(name)
        try:
            return pickle.loads(unframed(path))
        except (FileNotFoundError, Damaged):
            raise
        except Exception as e:  # (a whole frame whose pickle fails: a file from a build of other code)
            raise Damaged(path, f"{type(e).__name__}: {e}") from None

    def _save_data(self, name, data):
        self._write(self._data_path(name), data)

    def _write(self, path, obj):
        if os.path.isdir(path) and not os.path.islink(
            path
        ):  # (a folder in a file's place: no rename replaces it)
            _remove(path)
        with self._open_for_write(path) as f:  # (a temporary file beside it, renamed over it)
            f.write(framed(self._dump(obj)))


class _Locator(caching.UserProvidedCacheLocator):
    """numba.config.CACHE_DIR, or nothing: a folder that cannot be made or written gives no locator
    (the kernel is then compiled in memory), where Numba would go on to other folders."""

    @classmethod
    def from_function(cls, py_func, py_file):
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError as e:
            unwritable(e)
            return None
        return self

    def ensure_cache_path(self):
        folder = self.get_cache_path()  # (CACHE_DIR/<source folder>_<hash>: ours, whatever is there)
        if os.path.lexists(folder) and not os.path.isdir(folder):
            _remove(folder)
        super().ensure_cache_path()


class _Impl(caching.CompileResultCacheImpl):
    _locator_classes = [_Locator]


class _Cache(caching.FunctionCache):
    """FunctionCache over framed files, whose load takes any failure for a miss (removing what failed)
    and whose save takes any failure for a cache that cannot be written."""

    _impl_class = _Impl

    def __init__(self, py_func):
        super().__init__(py_func)
        old = self._cache_file
        self._cache_file = _Files(self._cache_path, self._impl.filename_base, old._source_stamp)

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as e:  # damaged: whatever the file held, the kernel is compiled again
            _remove(getattr(e, "path", None) or self._cache_file._index_path)
            paths.note_once(
                "kernels damaged",
                f"damaged compiled kernels in {config.CACHE_DIR} ({e}); compiling them again",
            )
            return None

    def save_overload(self, sig, data):
        if paths.said("kernels unwritable"):
            return
        try:
            super().save_overload(sig, data)
        except Exception as e:
            unwritable(e)


def unwritable(e: Exception) -> None:
    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    paths.note_once(
        "kernels unwritable",
        f"compiled kernels cannot be kept in {config.CACHE_DIR} ({why}); "
        "compiling them in memory for this run",
    )


def _remove(path: str) -> None:
    """Best effort: a damaged entry that stays is only compiled again next time too."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:
        pass


def cache_for(py_func):
    """The disk cache of one kernel, or Numba's NullCache where the cache folder cannot be used."""
    try:
        return _Cache(py_func)
    except Exception as e:  # (no locator: the folder cannot be written, said once by _Locator)
        unwritable(e)
        return caching.NullCache()
