"""Hostile checkpoints for tests: a real one taken apart, edited, and put back together with its
checksums recomputed (an adversary's file, which validation must catch) or left as they were (a
damaged file, which the checksums must catch); and the CLI run in this process, output captured, or in
a child process as a shell starts it."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from rnncli.cli import main as cli
from rnncli.store import checkpoint

RAW = ("format", "format_version")  # metadata strings that are not JSON documents of their own


def take_apart(path) -> tuple[dict, dict, bytes]:
    """(tensor table, decoded metadata, data bytes) of a checkpoint file."""
    blob = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    meta = {k: v if k in RAW else json.loads(v) for k, v in header.pop("__metadata__").items()}
    return header, meta, blob[8 + n :]


def put_together(path, table: dict, meta: dict, data: bytes, reseal: bool = True) -> None:
    """Write a checkpoint from parts; with `reseal`, checksums that agree with whatever the parts
    now hold (where the table's offsets can be read at all)."""
    raw = {k: v if k in RAW and isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    if reseal:
        sums = {}
        for name, entry in table.items():
            try:
                begin, end = entry["data_offsets"]
                sums[name] = f"{zlib.crc32(data[begin:end]):08x}"
            except (TypeError, ValueError, KeyError):
                sums[name] = "0"
        raw["checksums"] = json.dumps({"header": checkpoint._header_crc(table, raw), "tensors": sums})
    head = json.dumps({"__metadata__": raw, **table}).encode()
    head += b" " * (-len(head) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(head)) + head + data)


def edited(src, dst, edit, reseal: bool = True) -> Path:
    """Copy checkpoint `src` to `dst` through edit(table, meta, data) -> data (which may change
    table and meta in place)."""
    table, meta, data = take_apart(src)
    data = edit(table, meta, data)
    put_together(dst, table, meta, data, reseal)
    return Path(dst)


def run_cli(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `rnncli ARGV`, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    stdin_text = io.TextIOWrapper(io.BytesIO(stdin))
    saved_stdin, sys.stdin = sys.stdin, stdin_text
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(argv))
                code = 0
            except SystemExit as e:
                code = e.code
    finally:
        sys.stdin = saved_stdin
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, allowed=(0, 1)) -> None:
    """Success, or one line on stderr that is an rnncli error: never a traceback."""
    assert code in allowed, (code, err)
    assert "Traceback" not in err, err
    if code != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rnncli: error: "), err


def _as_from_a_shell():
    """The stop signals as a shell leaves them to a command it starts: handled by default and not
    blocked, whatever an earlier test left in this worker (a signal ignored or blocked there would
    be ignored or blocked in the child too)."""
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    for sig in stops:
        signal.signal(sig, signal.SIG_DFL)


def rnncli_popen(*args, **kw):
    """`rnncli ARGS` in a child process started as a shell starts it (Popen's keywords pass through)."""
    kw.setdefault("preexec_fn", _as_from_a_shell)
    return subprocess.Popen([sys.executable, "-m", "rnncli", *args], **kw)
