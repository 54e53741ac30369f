"""The committed results tables are what their rows generate.

`make results` rewrites every table kept with its rows (`<name>.jsonl` beside
`<name>.md`) through the benchmark's own `--tables_only`; here each one is
rewritten into a copy of `benchmarks/results/` and compared with the
committed file, so a table edited by hand, or rows committed without their
table, fail.
"""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SWEEPS = re.search(r"^RESULT_SWEEPS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()

# Runs each sweep's process once: on the TensorFlow backend.
pytestmark = pytest.mark.tensorflow


def test_every_table_kept_with_rows_has_a_sweep():
    tables = {
        path.stem for path in RESULTS.glob("*.md") if path.with_suffix(".jsonl").exists()
    }
    covered = {table for table in tables if table in SWEEPS or table.rsplit("_", 1)[0] in SWEEPS}
    assert tables and tables == covered


@pytest.mark.parametrize("sweep", SWEEPS)
def test_committed_tables_are_what_the_rows_generate(sweep, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(RESULTS, out)
    flag = [f"--out={out / sweep}"] if sweep == "keras_hub_zoo" else [f"--out_dir={out}"]
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{sweep}", "--tables_only", *flag],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    committed = sorted(RESULTS.glob(f"{sweep}*.md"))
    assert committed
    for table in committed:
        assert (out / table.name).read_text() == table.read_text(), (
            f"{table.name} differs from what its rows generate: run `make results`"
        )
