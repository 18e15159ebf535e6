"""Every cache is a cache: a compiled kernel, the tuning file or a token cache entry that is damaged
(cut short, garbage, empty, unreadable, a folder in its place) is rebuilt with one note, and a cache
folder that cannot be written (read-only, full, under /proc) costs a rebuild, never the command.
Kernels here are a toy compiled through the project's one wrapper (a real cold compile is
test_concurrency's)."""

import errno
import json
import os

import numba
import numpy as np
import pytest

from rnncli.base import paths
from rnncli.kernels import cache
from rnncli.kernels.cpu import gemm, tune
from rnncli.kernels.jit import kernel
from tests.mounts import fill, tmpfs


def _toy(x, y):
    return x * 2.0 + y


@pytest.fixture
def notes(monkeypatch):
    said = []
    monkeypatch.setattr(paths, "notes", said.append)
    monkeypatch.setattr(paths, "_said", set())
    return said


def _compiled(folder, monkeypatch):
    """A fresh dispatcher of the toy kernel cached under `folder`: (its result, disk hits, compiles)."""
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(folder))
    f = kernel(_toy)
    result = f(1.5, 2.0)
    return result, sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())


def _damage(path, how, monkeypatch):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "folder":
        path.unlink()
        (path / "inside").mkdir(parents=True)
    elif how == "unreadable":  # (mode 000 stops no read by root, which CI runs as: the open fails instead)
        real = open

        def refusing(name, *args, **kw):
            if str(name) == str(path) and path.exists():
                raise PermissionError(errno.EACCES, "Permission denied", str(name))
            return real(name, *args, **kw)

        monkeypatch.setattr(cache, "open", refusing, raising=False)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "folder", "unreadable"])
@pytest.mark.parametrize("which", ["index", "data"])
def test_a_damaged_kernel_cache_file_is_compiled_again_with_one_note(
    tmp_path, monkeypatch, notes, which, how
):
    assert _compiled(tmp_path, monkeypatch) == (5.0, 0, 1)
    (index,) = tmp_path.glob("**/*_toy-*.nbi")
    (data,) = tmp_path.glob("**/*_toy-*.nbc")
    _damage(index if which == "index" else data, how, monkeypatch)
    if how == "folder" and which == "index":  # both: a new index names the first data file again
        _damage(data, how, monkeypatch)
    assert _compiled(tmp_path, monkeypatch) == (5.0, 0, 1)  # compiled again, same result
    assert len(notes) == 1 and "damaged compiled kernels" in notes[0] and "compiling them again" in notes[0]
    monkeypatch.undo()  # (the refusing open too)
    monkeypatch.setattr(paths, "notes", notes.append)
    assert _compiled(tmp_path, monkeypatch) == (5.0, 1, 0)  # and kept: the next process reads it
    assert len(notes) == 1


@pytest.mark.parametrize("where", ["read-only", "full", "proc", "a file"])
def test_a_kernel_cache_folder_that_cannot_be_written_compiles_in_memory(tmp_path, monkeypatch, notes, where):
    folder = tmp_path / "cache"
    if where == "proc":
        assert _compiled("/proc/rnncli-cache", monkeypatch) == (5.0, 0, 1)
    elif where == "a file":
        folder.write_text("not a folder")
        assert _compiled(folder, monkeypatch) == (5.0, 0, 1)
        assert folder.read_text() == "not a folder"  # (not ours to delete)
    else:
        with tmpfs(folder, "64k", read_only=where == "read-only"):
            if where == "full":
                fill(folder)
            assert _compiled(folder / "kernels", monkeypatch) == (5.0, 0, 1)
    assert len(notes) == 1 and "compiling them in memory" in notes[0]


def test_a_full_disk_for_the_token_cache_and_the_tuning_file_costs_a_rebuild(tmp_path, monkeypatch, notes):
    """A real full file system under both: the ids come from a temporary file instead, with a note,
    and the measured kernel choice is used without being kept, with one note."""
    from rnncli.data.corpus import load_corpus

    text = tmp_path / "t.txt"
    text.write_text("a tiny corpus, tokenized twice\n" * 50)
    want = load_corpus([str(text)], "char", 100, cache=False)
    folder = tmp_path / "cache"
    with tmpfs(folder, "64k"):
        (folder / "tokens").mkdir()
        fill(folder)
        monkeypatch.setenv("RNNCLI_CACHE_DIR", str(folder))
        got = load_corpus([str(text)], "char", 100)
        assert "could not be written (No space left on device)" in got.note
        assert np.array_equal(got.ids, want.ids) and got.tokenizer.to_json() == want.tokenizer.to_json()
        monkeypatch.setattr(tune, "path_file", lambda: folder / "tune.json")
        monkeypatch.setattr(tune, "measure", lambda *a: gemm.ROWS4)
        monkeypatch.setenv("RNNCLI_TUNE", "1")
        tune.reset()
        try:
            assert tune.path(8, 512, 128, 1) == gemm.ROWS4 and tune.path(8, 512, 256, 1) == gemm.ROWS4
        finally:
            tune.reset()
        assert len(notes) == 1 and "tuning file" in notes[0] and "No space left" in notes[0]
        assert not (folder / "tune.json").exists() and not list(folder.glob(".tune.json.tmp*"))


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "folder"])
def test_a_damaged_tuning_file_is_measured_again_and_rewritten(tmp_path, monkeypatch, how):
    said = []
    monkeypatch.setattr(tune, "notes", said.append)
    monkeypatch.setattr(paths, "notes", said.append)
    monkeypatch.setattr(paths, "_said", set())
    monkeypatch.setattr(tune, "path_file", lambda: tmp_path / "tune.json")
    monkeypatch.setattr(tune, "measure", lambda *a: gemm.ROWS4)
    monkeypatch.setenv("RNNCLI_TUNE", "1")
    tune.reset()
    try:
        tune.path(8, 512, 128, 1)
        _damage(tmp_path / "tune.json", how, monkeypatch)
        tune.reset()
        assert tune.path(8, 512, 128, 1) == gemm.ROWS4
        assert len(said) == 1 and "measuring again" in said[0]
        assert json.loads((tmp_path / "tune.json").read_text())["paths"]  # rebuilt
        tune.forget()  # (bench --tune, whatever is there)
        assert not os.path.lexists(tmp_path / "tune.json")
    finally:
        tune.reset()
