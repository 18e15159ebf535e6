"""Checkpoints as files: the safetensors layout, checksums and the writer's lock (written whole or
not at all through base/files.py).

Model tensors carry PyTorch's names (see config.ModelConfig.tensor_shapes). Training adds
`optimizer.exp_avg.*`, `optimizer.exp_avg_sq.*`, `resume.*` (the latest weights, when they differ
from the best ones kept under the model names) and `state.h`/`state.c` (the hidden state carried
between windows). This module checks the file's structure (header, tensor table, offsets, CRC-32
checksums); validate.py checks what the contents mean. The header is read without numpy, so
`inspect` stays fast.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from pathlib import Path

from rnncli.base import pathcheck
from rnncli.base.errors import RnncliError
from rnncli.base.files import write_atomic

FORMAT = "rnncli-checkpoint"
VERSION = 2  # 2: CRC-32 of the header and of every tensor ("checksums" in the metadata)
TRAINING_PREFIXES = ("optimizer.", "resume.", "state.")
DTYPES = {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32", "uint8": "U8", "uint16": "U16"}
ITEMSIZE = {"F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "U16": 2}
MAX_HEADER = 100_000_000  # as safetensors itself


def _damaged(path, problem: str) -> RnncliError:
    return RnncliError(f"{path} is damaged: {problem}")


def _strict_json(data: bytes | str):
    """JSON with no NaN/Infinity and no repeated keys (either would make two readers disagree)."""

    def pairs(items):
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("a key is repeated")
        return dict(items)

    def constant(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, object_pairs_hook=pairs, parse_constant=constant)


def _header_crc(table: dict, raw_meta: dict) -> str:
    """CRC-32 of the tensor table and every metadata string but the checksums themselves."""
    meta = {k: v for k, v in raw_meta.items() if k != "checksums"}
    blob = json.dumps([table, meta], sort_keys=True, separators=(",", ":")).encode()
    return f"{zlib.crc32(blob):08x}"


def _check_table(path, table: dict, data_size: int) -> None:
    """Each entry a known dtype, a shape and offsets that agree, the entries tiling the data exactly."""
    spans = []
    for name, entry in table.items():
        ok = isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}
        ok = (
            ok
            and isinstance(entry["dtype"], str)
            and entry["dtype"] in ITEMSIZE
            and isinstance(entry["shape"], list)
        )
        ok = ok and len(entry["shape"]) <= 8  # (math.prod of a long list would take forever)
        ok = ok and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= data_size for d in entry["shape"]
        )
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        ok = ok and isinstance(offsets, list) and len(offsets) == 2
        ok = ok and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        if not ok:
            raise _damaged(path, f"the entry of tensor {name!r} is malformed")
        begin, end = offsets
        if not 0 <= begin <= end or end - begin != math.prod(entry["shape"]) * ITEMSIZE[entry["dtype"]]:
            raise _damaged(path, f"tensor {name!r} has offsets {offsets} that do not fit its shape")
        spans.append((begin, end, name))
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise _damaged(path, f"tensor {name!r} overlaps another or leaves a gap")
        at = end
    if at != data_size:
        raise _damaged(
            path, f"the tensors hold {at} bytes but the file has {data_size} (truncated or padded)"
        )


def _unreadable(path, e: OSError) -> RnncliError:
    if isinstance(e, FileNotFoundError):
        return RnncliError(f"no such checkpoint: {path}")
    if isinstance(e, IsADirectoryError):
        return RnncliError(f"{path} is a directory, not a checkpoint")
    return RnncliError(f"cannot read {path}: {e.strerror or e}")


def looks_like(path: str | os.PathLike) -> bool:
    """Whether a file begins as a safetensors file does (a header length, then a JSON object), read from
    its first bytes alone: for telling a checkpoint given where text is expected. Only a regular file
    is looked at: a FIFO or a device read here would lose what it gives to the reader after."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError):
        return False
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 2 <= n <= MAX_HEADER and n + 8 <= size and head[8:9] == b"{"


def _number(text) -> int | None:
    """A plain decimal of at most nine digits, else None (str.isdigit also takes '²')."""
    return int(text) if isinstance(text, str) and re.fullmatch(r"[0-9]{1,9}", text) else None


class Reader:
    """An open checkpoint whose structure and header checksum are checked; tensors are read from
    the same open file (a rename by another writer in between cannot mix two files). What the
    settings mean is validate.py's business."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        pathcheck.readable_file(str(path), "checkpoint")
        try:
            self.file = open(self.path, "rb")
        except OSError as e:
            raise _unreadable(self.path, e) from None
        try:
            self.table, self.meta = self._header()
        except BaseException:
            self.file.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def _header(self) -> tuple[dict, dict]:
        path, f = self.path, self.file
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("too short")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, MAX_HEADER):
                raise ValueError("bad header length")
            header = _strict_json(f.read(n))
            if not isinstance(header, dict):
                raise ValueError("not an object")
        except OSError as e:
            raise _unreadable(path, e) from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise RnncliError(f"{path} is not a safetensors checkpoint") from None
        self.data_start = 8 + n
        raw = header.pop("__metadata__", None) or {}
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise RnncliError(
                f"{path} is not a safetensors checkpoint (its metadata is not a map of strings)"
            )
        if raw.get("format") != FORMAT:
            raise RnncliError(f"{path} is a safetensors file but not an rnncli checkpoint")
        version = _number(raw.get("format_version"))
        if version is None or not 1 <= version <= VERSION:
            raise RnncliError(
                f"{path} was written by a newer rnncli (format {version}); upgrade rnncli"
                if version and version > VERSION
                else f"{path} has an unknown format version {raw.get('format_version')!r:.40}"
            )
        _check_table(path, header, size - self.data_start)
        meta = {}
        for key, value in raw.items():
            try:
                meta[key] = _strict_json(value)
            except (ValueError, RecursionError):
                meta[key] = value
        meta["format_version"] = version
        if version >= 2:
            sums = meta.get("checksums")
            if not isinstance(sums, dict) or not isinstance(sums.get("tensors"), dict):
                raise _damaged(path, "its checksums are missing")
            if sums.get("header") != _header_crc(header, raw):
                raise _damaged(path, "the header does not match its checksum")
            if set(sums["tensors"]) != set(header):
                raise _damaged(path, "the checksums do not name the tensors it holds")
        return header, meta

    def tensors(self, names) -> dict:
        """The named tensors (as validate.py accepted the header), each checked against its CRC-32
        (files of format 2 on)."""
        import numpy as np

        path, f, table = self.path, self.file, self.table
        sums = self.meta["checksums"]["tensors"] if self.meta["format_version"] >= 2 else None
        out = {}
        try:
            for name in sorted(names, key=lambda k: table[k]["data_offsets"][0]):
                entry = table[name]
                begin, end = entry["data_offsets"]
                arr = np.empty(entry["shape"], np.dtype(_NUMPY[entry["dtype"]]).newbyteorder("<"))
                f.seek(self.data_start + begin)
                if f.readinto(memoryview(arr).cast("B")) != end - begin:
                    raise _damaged(path, f"tensor {name!r} is cut short")
                if sums is not None and sums[name] != f"{zlib.crc32(arr):08x}":
                    raise _damaged(path, f"the data of tensor {name!r} does not match its checksum")
                out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        except OSError as e:
            raise _unreadable(path, e) from None
        return out


def read_header(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensor table, decoded metadata) of a checkpoint, reading only its header (no numpy)."""
    with Reader(path) as r:
        return r.table, r.meta


_NUMPY = {v: k for k, v in DTYPES.items()}


def save(path: str | os.PathLike, tensors: dict, meta: dict) -> None:
    """Write tensors (name -> numpy array) and metadata atomically: temporary file, fsync, rename.
    The safetensors layout is written directly, one tensor at a time, so saving never holds a
    second copy of the whole file in memory."""
    path = Path(path)
    arrays = {
        name: arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False) for name, arr in tensors.items()
    }
    raw = {key: json.dumps(value, allow_nan=False) for key, value in meta.items()}
    raw["format"], raw["format_version"] = FORMAT, str(VERSION)
    table, offset = {}, 0
    for name, arr in arrays.items():
        table[name] = {
            "dtype": DTYPES[arr.dtype.name],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    sums = {name: f"{zlib.crc32(memoryview(arr).cast('B')):08x}" for name, arr in arrays.items()}
    raw["checksums"] = json.dumps({"header": _header_crc(table, raw), "tensors": sums})
    head = json.dumps({"__metadata__": raw, **table}, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(head)) + head)
        for arr in arrays.values():
            f.write(memoryview(arr).cast("B"))

    write_atomic(path, write, "checkpoint")


class WriteLock:
    """An exclusive claim on writing a checkpoint path, held by one run at a time: flock on
    `.NAME.lock` beside it, released (and the file removed) by `release()` or when the process ends,
    however it ends."""

    def __init__(self, path: str | os.PathLike):
        import fcntl

        self.lock_path = Path(path).with_name(f".{Path(path).name}.lock")
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise RnncliError(f"cannot write the checkpoint {path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise RnncliError(
                    f"another rnncli run (pid {owner or '?'}) is writing {path}; "
                    "wait for it to finish or choose another --out"
                ) from None
            try:  # the holder before us may have removed the file between our open and our lock
                if os.path.samestat(os.fstat(fd), os.stat(self.lock_path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as e:
            os.close(fd)
            raise RnncliError(f"cannot write the checkpoint {path}: {e.strerror}") from None
        self.fd = fd
        self._remove_temporaries(Path(path))

    @staticmethod
    def _remove_temporaries(path: Path) -> None:
        """Whoever holds the lock is the only writer of `path`, so any `.NAME.tmp*` beside it was
        left by a run killed while saving: remove them."""
        prefix = f".{path.name}.tmp"
        try:
            stale = [name for name in os.listdir(path.parent) if name.startswith(prefix)]
        except OSError:
            return
        for name in stale:
            try:
                os.unlink(path.parent / name)
            except OSError:
                pass

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.lock_path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            self.release()
