"""The documentation builds strictly, and its code runs as written.

`make docs` runs the same strict build; a broken link, a missing anchor, an
API reference to a name that does not exist or a docstring mkdocstrings
cannot parse fails it. The quick start has one source
(`docs/snippets/quickstart.py`), included by the site's home page and copied
into the README, which must match it. Every Python block of the guides runs,
a page's blocks in order in one namespace (as a reader would paste them),
and every `python -m` command in them has its flags checked by absl
(`--only_check_args`): a renamed argument or flag fails here.
"""

import os
import pathlib
import re
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest

import keras_str

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "snippets" / "quickstart.py"
# The pages a reader follows step by step; the results pages quote
# benchmark commands that run for minutes to hours.
GUIDES = sorted(
    [ROOT / "docs" / "index.md", ROOT / "docs" / "install.md"]
    + list((ROOT / "docs" / "guide").glob("*.md"))
)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"\n', re.M)

# Building needs only the docs extra, but runs once: on the TensorFlow backend.
pytestmark = pytest.mark.tensorflow


def build_site(config_dir, site_dir):
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=config_dir,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def python_blocks(markdown):
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.M | re.S)


def page_text(page):
    """The page as mkdocs renders it: snippets included."""
    return SNIPPET.sub(lambda match: (ROOT / match.group(1)).read_text(), page.read_text())


def python_commands(markdown):
    """`python -m module --flags` lines of the page's shell blocks."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", markdown, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].split()
            if line[:2] in (["python", "-m"], [".venv/bin/python", "-m"]):
                commands.append(line[2:])
    return commands


def page_id(page):
    return page.relative_to(ROOT / "docs").as_posix()


def test_site_builds_strictly(tmp_path):
    result = build_site(ROOT, tmp_path)
    assert result.returncode == 0, result.stderr
    home = re.sub(r"<[^>]+>", "", (tmp_path / "index.html").read_text())
    assert "keras_str.sparsify(" in home  # the quick start, included
    api = re.sub(r"<[^>]+>", "", (tmp_path / "api" / "lifecycle" / "index.html").read_text())
    assert "Returns model rebuilt with sparse-trainable layers" in api
    tables = (tmp_path / "results" / "tables" / "index.html").read_text()
    for table in (ROOT / "benchmarks" / "results").rglob("*.md"):
        relative = table.relative_to(ROOT / "benchmarks" / "results").with_suffix("")
        assert (tmp_path / "results" / "tables" / relative / "index.html").exists()
        assert relative.as_posix() in tables


def test_broken_link_fails_the_build(tmp_path):
    for name in ("docs", "keras_str", "benchmarks/results"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    install = tmp_path / "docs" / "install.md"
    install.write_text(install.read_text() + "\nSee [nowhere](guide/nowhere.md).\n")
    result = build_site(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    assert "guide/nowhere.md" in result.stderr


def test_readme_quick_start_is_the_docs_quick_start():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1]
    assert python_blocks(quick_start)[0] == QUICKSTART.read_text()


def test_readme_headline_figures_are_in_their_tables():
    # The README quotes a few results; each figure must be in the generated
    # table its row links to, so a rerun that changes a table shows here.
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ") and "](benchmarks/results/" in line]
    assert len(rows) >= 3
    for row in rows:
        cells = row.split("|")[1:-1]
        tables = re.findall(r"\]\((benchmarks/results/[^)]+\.md)\)", row)
        text = "".join((ROOT / table).read_text() for table in tables)
        for figure in re.findall(r"\d+\.\d+", cells[1] + cells[2]):
            assert figure in text, f"{figure} of README row {cells[0].strip()!r} is not in {tables}"


def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    names = runpy.run_path(str(QUICKSTART))
    printed = capsys.readouterr().out
    assert "hidden" in printed and "sparse tensors: 1" in printed
    report = keras_str.sparsity_report(names["model"])
    assert report.totals["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert (tmp_path / "model.keras").exists()
    assert (tmp_path / "model.tflite").exists()
    x = names["x"][:4]
    np.testing.assert_allclose(
        keras_str.predict_tflite("model.tflite", x),
        np.asarray(names["plain"](x)),
        atol=1e-4,
    )


@pytest.mark.parametrize(
    "page", [page for page in GUIDES if python_blocks(page.read_text())], ids=page_id
)
def test_page_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for number, block in enumerate(python_blocks(page_text(page))):
        exec(compile(block, f"{page_id(page)}, block {number}", "exec"), namespace)


COMMANDS = [
    (page, command) for page in GUIDES for command in python_commands(page.read_text())
]


@pytest.mark.parametrize(
    "page, command", COMMANDS, ids=[f"{page_id(p)}: {c[0]}" for p, c in COMMANDS]
)
def test_page_command_flags_parse(page, command):
    result = subprocess.run(
        [sys.executable, "-m", *command, "--only_check_args"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_guides_have_code_to_run():
    # The parametrizations above would pass on no pages at all.
    assert len([page for page in GUIDES if python_blocks(page.read_text())]) >= 6
    assert len(COMMANDS) >= 5
