"""The word tokenizer's first pass over a large file in several processes: the file is cut just after
ASCII whitespace (always a token boundary), each part gets its provisional ids in a worker process
(`python -m rnncli.data.word_split`), and streaming.finish_words merges them as if one pass had read it all.

The pass is one dictionary look-up per word in Python, so it is bound to one core; the workers are
fresh interpreters started with exec (never fork: a process that has run Numba's thread pool cannot
fork safely), and they report a bad byte with its offset in the whole file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from rnncli.base.errors import RnncliError

MIN_BYTES = 1 << 26  # smaller files are read in one pass (starting processes costs ~0.2 s)
MAX_WORKERS = 4
SPACE = b" \t\n\r\x0b\x0c"
BAD = 3  # a worker's exit status for a bad byte (the message on its stderr)


def workers_for(size: int) -> int:
    """How many processes read a file of `size` bytes: one below MIN_BYTES or on one core."""
    from rnncli.base.machine import usable_cores

    return 1 if size < MIN_BYTES else max(1, min(usable_cores(), MAX_WORKERS))


def cuts(file, size: int, parts: int, skip: int) -> list[int]:
    """Byte offsets [skip, c1, ..., size]: each inner cut just after the first ASCII whitespace at or past
    an even share of the file (a part with no whitespace in it joins the next)."""
    out = [skip]
    for k in range(1, parts):
        file.seek(max(out[-1], k * size // parts))
        block = file.read(1 << 20)
        at = min((i for i in (block.find(bytes([ch])) for ch in SPACE) if i >= 0), default=-1)
        if at >= 0:
            out.append(file.tell() - len(block) + at + 1)
    return out + [size] if out[-1] < size else out


def provisional_parts(path: str, size: int, skip: int, hint: str, folder, workers: int, raw_file, meanwhile):
    """streaming.provisional of each part of the file, read by `workers` processes: a list of
    (strings, counts, temp file of ids) in text order (the files are the caller's to close).
    meanwhile() runs in this process while they work."""
    bounds = cuts(raw_file, size, workers, skip)
    work = tempfile.mkdtemp(dir=folder, prefix=".words-")
    procs = []
    try:
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            argv = [
                sys.executable,
                "-m",
                "rnncli.data.word_split",
                path,
                str(a),
                str(b),
                str(a - skip),
                hint,
                os.path.join(work, str(k)),
            ]
            procs.append(subprocess.Popen(argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL))
        meanwhile()
        errors = [p.communicate()[1].decode(errors="replace").strip() for p in procs]
        for p, err in zip(procs, errors):  # the first part's bad byte is the text's first
            if p.returncode == BAD:
                raise RnncliError(err.splitlines()[-1])
            if p.returncode != 0:
                raise RnncliError(f"a word-splitting process failed ({p.returncode}): {err[-300:]}")
        parts = []
        for k in range(len(procs)):
            base = os.path.join(work, str(k))
            with open(base + ".json") as f:
                strings = json.load(f)
            parts.append((strings, np.load(base + ".npy"), open(base + ".ids", "rb")))
            for name in (base + ".json", base + ".npy", base + ".ids"):
                os.unlink(name)  # (the ids stay readable through the open file)
        return parts
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)


def _worker(path: str, start: int, end: int, offset: int, hint: str, base: str) -> None:
    """One part: provisional ids of bytes [start, end) of the file (`offset` in the text a bad byte's
    message counts from) into base.ids/.npy/.json."""
    from rnncli.data import streaming

    def blocks():
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0 and (raw := f.read(min(1 << 24, left))):
                left -= len(raw)
                yield raw

    with open(base + ".ids", "wb") as out:
        pieces = streaming.utf8_pieces(blocks(), 0, hint, streaming.STEP, done=offset)
        strings, counts, _ = streaming.provisional(pieces, out)
    np.save(base + ".npy", counts)
    with open(base + ".json", "w") as f:
        json.dump(strings, f)


if __name__ == "__main__":
    try:
        _worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    except RnncliError as e:
        print(e, file=sys.stderr)
        sys.exit(BAD)
    except MemoryError:
        print("out of memory while splitting the corpus into words", file=sys.stderr)
        sys.exit(BAD)
    except OSError as e:
        print(f"cannot tokenize the corpus: {e.strerror or e}", file=sys.stderr)
        sys.exit(BAD)
