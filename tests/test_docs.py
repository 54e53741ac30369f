"""The documentation builds strictly, and its quick start runs as written.

`make docs` runs the same strict build; a broken link, a missing anchor, an
API reference to a name that does not exist or a docstring mkdocstrings
cannot parse fails it. The quick start has one source
(`docs/snippets/quickstart.py`), included by the site's home page and copied
into the README, which must match it.
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
