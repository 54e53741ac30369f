"""The benchmark harness: workers, alternating rounds, spreads and provenance."""

import re

import pytest

from benchmarks import harness


def test_alternating_rounds_reverse_the_order_every_other_round():
    calls = []

    def timer(name):
        def measure():
            calls.append(name)
            return float(len(calls))

        return measure

    values = harness.alternating_rounds({"dense": timer("dense"), "sparse": timer("sparse")}, 4)
    assert calls == ["dense", "sparse", "sparse", "dense", "dense", "sparse", "sparse", "dense"]
    assert values == {"dense": [1.0, 4.0, 5.0, 8.0], "sparse": [2.0, 3.0, 6.0, 7.0]}


def test_per_round_ratios_and_median_spread():
    values = {"dense": [2.0, 4.0, 5.0], "sparse": [1.0, 1.0, 5.0]}
    ratios = harness.per_round_ratios(values, "dense")
    assert ratios == {"dense": [1.0, 1.0, 1.0], "sparse": [0.5, 0.25, 1.0]}
    median, low, high = harness.median_spread(range(11))
    assert (median, low, high) == (5.0, 1.0, 9.0)


def test_run_worker_returns_the_emitted_rows_of_its_backend():
    code = (
        "import os; from benchmarks.harness import emit; "
        "emit({'step': 1}); print('progress, not a row'); "
        "emit({'backend': os.environ['KERAS_BACKEND'], 'extra': os.environ['EXTRA']})"
    )
    rows = harness.run_worker(["-c", code], "jax", env={"EXTRA": "yes"})
    assert rows == [{"step": 1}, {"backend": "jax", "extra": "yes"}]


def test_run_worker_says_which_worker_failed():
    with pytest.raises(RuntimeError, match=r"python -c import sys; sys.exit\(3\)` on torch .*status 3"):
        harness.run_worker(["-c", "import sys; sys.exit(3)"], "torch")


def test_provenance_names_command_commit_machine_versions_and_date():
    stamp = harness.provenance("benchmarks.example")
    assert stamp["command"].startswith("python -m benchmarks.example")
    assert re.fullmatch(r"[0-9a-f]{7,}(\+uncommitted)?|", stamp["commit"])
    assert "cores" in stamp["machine"]
    assert stamp["versions"]["keras"] and stamp["versions"]["numpy"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", stamp["date"])


def test_markdown_table_and_commands_line():
    text = harness.markdown_table(["a", "b", "c"], [["1", "", "3"], ["x", "y", "z"]])
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1 | | 3 |", "| x | y | z |"]
    rows = [{"command": "python -m b --x"}, {"command": "python -m a"}, {"command": "python -m a"}]
    assert harness.commands_line(rows) == "Commands: `python -m a`; `python -m b --x`"
