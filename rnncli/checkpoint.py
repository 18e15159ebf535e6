"""Checkpoints: one safetensors file, metadata as JSON strings, written atomically.

Model tensors carry PyTorch's names (see params.py). Training adds `optimizer.exp_avg.*`,
`optimizer.exp_avg_sq.*`, `resume.*` (the latest weights, when they differ from the best ones kept
under the model names) and `state.h`/`state.c` (the hidden state carried between windows).
Reading the header needs neither numpy nor numba, so `inspect` stays fast.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from rnncli.errors import RnncliError

FORMAT = "rnncli-checkpoint"
VERSION = 1
TRAINING_PREFIXES = ("optimizer.", "resume.", "state.")


def read_header(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensor table, decoded metadata) of a checkpoint, reading only its header."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = path.stat().st_size
            if len(head) < 8:
                raise ValueError("too short")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 1 << 28):
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise RnncliError(f"no such checkpoint: {path}") from None
    except IsADirectoryError:
        raise RnncliError(f"{path} is a directory, not a checkpoint") from None
    except (ValueError, UnicodeDecodeError):
        raise RnncliError(f"{path} is not a safetensors checkpoint") from None
    raw = header.pop("__metadata__", None) or {}
    if raw.get("format") != FORMAT:
        raise RnncliError(f"{path} is a safetensors file but not an rnncli checkpoint")
    if int(raw.get("format_version", "0")) > VERSION:
        raise RnncliError(f"{path} was written by a newer rnncli (format {raw['format_version']}); upgrade rnncli")
    meta = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return header, meta


DTYPES = {"float32": "F32", "float64": "F64", "int64": "I64", "int32": "I32", "uint8": "U8", "uint16": "U16"}


def save(path: str | os.PathLike, tensors: dict, meta: dict) -> None:
    """Write tensors (name -> numpy array) and metadata atomically: temporary file, fsync, rename.
    The safetensors layout is written directly, one tensor at a time, so saving never holds a
    second copy of the whole file in memory."""
    path = Path(path)
    raw = {key: json.dumps(value) for key, value in meta.items()}
    raw["format"], raw["format_version"] = FORMAT, str(VERSION)
    header, offset = {"__metadata__": raw}, 0
    for name, arr in tensors.items():
        header[name] = {"dtype": DTYPES[arr.dtype.name], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head)
            for arr in tensors.values():
                f.write(memoryview(arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RnncliError(f"cannot write checkpoint {path}: {e.strerror}") from None
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load(path: str | os.PathLike, training: bool = False) -> tuple[dict, dict]:
    """(tensors, metadata). Without `training`, only the model's tensors are read."""
    from safetensors import safe_open

    header, meta = read_header(path)
    tensors = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            for name in f.keys():
                if training or not name.startswith(TRAINING_PREFIXES):
                    tensors[name] = f.get_tensor(name)
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise RnncliError(f"{path} is damaged: {e}") from None
    return tensors, meta
