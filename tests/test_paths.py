"""Paths people name are checked before any work starts (rnncli/base/pathcheck.py): every option that
takes a path, given a folder, a missing folder, a device, the input itself, a file system that takes
no new files, a NUL or a name too long, ends in one line naming the path, exit 1, nothing written."""

import os
from pathlib import Path

import pytest

from tests.hostile import assert_clean, run_cli
from tests.mounts import tmpfs

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--embed", "4", "--batch", "4", "--seq", "8", "--steps", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paths")
    corpus = folder / "corpus.txt"
    corpus.write_bytes((ROOT / "sample_corpora" / "forecasts.txt").read_bytes()[:20000])
    code, _, err = run_cli("train", str(corpus), *TINY, "--out", str(folder / "m.safetensors"))
    assert code == 0, err
    (folder / "dir").mkdir()
    (folder / "plain").write_text("a file, not a folder")
    os.mkfifo(folder / "fifo")  # (a device would do as well: /dev/null itself was replaced before the check)
    return folder


CASES = {  # name: (argv with {f} the fixture's folder, what the line must say)
    "out .": (["train", "{f}/corpus.txt", "--out", "."], "cannot write the checkpoint .: it is a folder"),
    "out folder": (["train", "{f}/corpus.txt", "--out", "{f}/dir"], "it is a folder"),
    "out name/": (["train", "{f}/corpus.txt", "--out", "{f}/new/"], "it is a folder"),
    "out missing folder": (
        ["train", "{f}/corpus.txt", "--out", "{f}/nope/m.st"],
        "the folder {f}/nope does not exist",
    ),
    "out under a file": (["train", "{f}/corpus.txt", "--out", "{f}/plain/m.st"], "{f}/plain is not a folder"),
    "out /proc": (["train", "{f}/corpus.txt", "--out", "/proc/m.st"], "does not take new files"),
    "out pipe": (["train", "{f}/corpus.txt", "--out", "{f}/fifo"], "not a regular file"),
    "out is the corpus": (["train", "{f}/corpus.txt", "--out", "{f}/corpus.txt"], "which this command reads"),
    "out NUL": (["train", "{f}/corpus.txt", "--out", "m\0.st"], "cannot hold a NUL"),
    "out too long": (["train", "{f}/corpus.txt", "--out", "x" * 5000], "File name too long"),
    "resume folder": (["train", "{f}/corpus.txt", "--resume", "{f}/dir"], "{f}/dir: it is a folder"),
    "corpus NUL": (["train", "a\0b", *TINY], "cannot hold a NUL"),
    "model folder": (["generate", "-m", "{f}/dir"], "{f}/dir is a directory, not a checkpoint"),
    "model missing": (["eval", "-m", "{f}/nope.st", "{f}/corpus.txt"], "no such checkpoint: {f}/nope.st"),
    "model NUL": (["inspect", "m\0.st"], "cannot hold a NUL"),
    "model too long": (["generate", "-m", "y" * 5000], "File name too long"),
    "prompts folder": (["generate", "-m", "{f}/m.safetensors", "--prompts", "{f}/dir"], "is a directory"),
    "prompts NUL": (["generate", "-m", "{f}/m.safetensors", "--prompts", "p\0"], "cannot hold a NUL"),
    "eval text missing": (["eval", "-m", "{f}/m.safetensors", "{f}/nope.txt"], "no such file: {f}/nope.txt"),
    "text folder": (["inspect", "{f}/m.safetensors", "--text", "{f}/dir"], "is a directory"),
    "html folder": (
        ["inspect", "{f}/m.safetensors", "--text", "{f}/corpus.txt", "--html", "{f}/dir"],
        "it is a folder",
    ),
    "html missing folder": (
        ["inspect", "{f}/m.safetensors", "--text", "{f}/corpus.txt", "--html", "{f}/no/p.html"],
        "the folder {f}/no does not exist",
    ),
    "html pipe": (
        ["inspect", "{f}/m.safetensors", "--text", "{f}/corpus.txt", "--html", "{f}/fifo"],
        "not a regular file",
    ),
    "html is the text": (
        ["inspect", "{f}/m.safetensors", "--text", "{f}/corpus.txt", "--html", "{f}/corpus.txt"],
        "which this command reads",
    ),
    "html is the model": (
        ["inspect", "{f}/m.safetensors", "--text", "{f}/corpus.txt", "--html", "{f}/m.safetensors"],
        "which this command reads",
    ),
    "seed not UTF-8": (
        ["generate", "-m", "{f}/m.safetensors", "--seed", "\udcff"],
        "--seed holds bytes that are not UTF-8",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_path_is_one_line_before_any_work(files, case):
    argv, message = CASES[case]
    before = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()}
    code, out, err = run_cli(*(a.replace("{f}", str(files)) for a in argv))
    assert_clean(code, err, allowed=(1,))  # one line: no recipe, no "tokens, mean surprise" before it
    assert message.replace("{f}", str(files)) in err and out == ""
    assert {
        p.name: p.read_bytes() for p in files.iterdir() if p.is_file()
    } == before  # nothing written or replaced
    assert (files / "fifo").is_fifo()


def test_an_out_folder_on_a_read_only_file_system(files, tmp_path):
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        code, _, err = run_cli("train", str(files / "corpus.txt"), *TINY, "--out", str(ro / "m.safetensors"))
        assert_clean(code, err, allowed=(1,))
        assert f"the folder {ro} does not take new files (Read-only file system)" in err
