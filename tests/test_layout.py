"""The README's Layout section against the tree, and every relative link of the README and docs/.

The Layout section's fenced block names the package's folders, one a line (`rnncli/run/   what it
does`), the layers top to bottom; a folder inside a layer (`rnncli/kernels/cpu/`) belongs to that
layer. LAYERS is that order, for the import test to read: `from tests.test_layout import LAYERS`."""

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_PACKAGES = {"__pycache__", "page_assets"}


def layout_folders(text: str) -> list[str]:
    """The folders the Layout section names, in its order, relative to rnncli/ ("kernels/cpu")."""
    section = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "README.md has no '## Layout' section"
    block = re.search(r"^```[a-z]*\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, "the Layout section has no fenced block"
    folders = [m.group(1) for m in re.finditer(r"^rnncli/(\S+?)/(?:\s|$)", block.group(1), re.M)]
    assert folders and len(folders) == len(set(folders)), (
        f"the Layout block names no folder, or one twice: {folders}"
    )
    return folders


def layers_from(folders: list[str]) -> list[str]:
    """The layers, top to bottom: the top-level folders in the order the block lists them."""
    return [f for f in folders if "/" not in f]


def layers_from_readme(readme: Path = README) -> list[str]:
    return layers_from(layout_folders(readme.read_text(encoding="utf-8")))


LAYERS = layers_from_readme()


def packages(package: Path) -> list[str]:
    """Every sub-package folder under package (one holding __init__.py), relative, as "kernels/cpu"."""
    return sorted(
        p.parent.relative_to(package).as_posix()
        for p in package.rglob("__init__.py")
        if p.parent != package and not NOT_PACKAGES & set(p.parent.relative_to(package).parts)
    )


def layout_problems(folders: list[str], package: Path) -> list[str]:
    """What is wrong between the Layout block's folders and the package's tree (nothing: [])."""
    problems = [
        f"{f}/ is named in the README's Layout but {package.name}/{f}/__init__.py does not exist"
        for f in folders
        if not (package / f / "__init__.py").is_file()
    ]
    problems += [
        f"{p}/ is a package the README's Layout does not name" for p in packages(package) if p not in folders
    ]
    problems += [
        f"{f}/ sits inside {f.split('/')[0]}/, which the Layout does not name as a layer"
        for f in folders
        if "/" in f and f.split("/")[0] not in folders
    ]
    return problems


def test_the_layout_names_every_package_folder_and_only_those():
    problems = layout_problems(layout_folders(README.read_text(encoding="utf-8")), ROOT / "rnncli")
    assert not problems, "\n".join(problems)


def test_the_layers_are_listed_top_to_bottom_with_their_inner_folders_after_them():
    folders = layout_folders(README.read_text(encoding="utf-8"))
    assert LAYERS == layers_from(folders) and len(LAYERS) >= 2
    for inner in (f for f in folders if "/" in f):  # kernels/cpu/ comes after kernels/, before the next layer
        outer = inner.split("/")[0]
        between = folders[folders.index(outer) + 1 : folders.index(inner)]
        assert all(f.startswith(outer + "/") for f in between), f"{inner}/ is not listed under {outer}/"


def test_the_layout_check_itself_on_a_made_tree(tmp_path):
    """The check above on a tree made from the README's own list (so it holds before the real move), then
    with a package the README leaves out and with a named folder missing."""
    folders = layout_folders(README.read_text(encoding="utf-8"))
    package = tmp_path / "rnncli"
    for f in folders:
        (package / f).mkdir(parents=True, exist_ok=True)
        (package / f / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for ignored in ("__pycache__", f"{LAYERS[0]}/page_assets", f"{LAYERS[0]}/__pycache__"):
        (package / ignored).mkdir(exist_ok=True)
        (package / ignored / "__init__.py").write_text("")  # never a package of its own, even so
    (package / "notes").mkdir()  # a folder without __init__.py is no package
    assert layout_problems(folders, package) == []

    (package / LAYERS[0] / "extra").mkdir()
    (package / LAYERS[0] / "extra" / "__init__.py").write_text("")
    assert layout_problems(folders, package) == [
        f"{LAYERS[0]}/extra/ is a package the README's Layout does not name"
    ]
    (package / LAYERS[0] / "extra" / "__init__.py").unlink()
    (package / LAYERS[-1] / "__init__.py").unlink()
    assert layout_problems(folders, package) == [
        f"{LAYERS[-1]}/ is named in the README's Layout but rnncli/{LAYERS[-1]}/__init__.py does not exist"
    ]


def test_the_layout_parser_reads_order_and_inner_folders():
    text = (
        "# x\n## Layout\n\nprose rnncli/nope/ here\n```text\nrnncli/top/   a\n   wrapped description\n"
        "rnncli/mid/   b\nrnncli/mid/inner/  c\nrnncli/low/\n```\n## Next\n```\nrnncli/after/ x\n```\n"
    )
    assert layout_folders(text) == ["top", "mid", "mid/inner", "low"]
    assert layers_from(layout_folders(text)) == ["top", "mid", "low"]


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped but - and _, spaces to hyphens."""
    headings = re.findall(
        r"^#{1,6}\s+(.+?)\s*#*\s*$", re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S), re.M
    )
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def relative_links(path: Path) -> list[str]:
    # code is not prose
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]


def link_problems(path: Path) -> list[str]:
    problems = []
    for target in relative_links(path):
        file, _, anchor = unquote(target).partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            problems.append(f"{path.relative_to(ROOT)}: {target} points at nothing")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{path.relative_to(ROOT)}: {target} names no heading of {dest.name}")
    return problems


def test_every_relative_link_of_the_readme_and_docs_resolves():
    docs = [README, *sorted((ROOT / "docs").glob("*.md"))]
    assert sum(len(relative_links(p)) for p in docs) > 10  # the parser finds the links there are
    problems = [problem for p in docs for problem in link_problems(p)]
    assert not problems, "\n".join(problems)


def test_every_doc_says_what_it_covers_and_links_back_to_the_readme():
    for doc in sorted((ROOT / "docs").glob("*.md")):
        head = doc.read_text(encoding="utf-8").split("\n\n")[:2]
        assert head[0].startswith("# ") and "../README.md" in head[1], doc.name


def test_ci_runs_the_readmes_test_command_verbatim():
    """.ci/run does not read the README: it holds the command, which must stay the README's."""
    readme = README.read_text(encoding="utf-8")
    command = re.search(r"^Run the tests:\n\n {4}(.+)$", readme, re.M)
    assert command, "README.md has no 'Run the tests:' command"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command.group(1) in ci
