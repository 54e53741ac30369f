"""The transformer LM benchmark's corpus, sweep and table (the runs themselves are in `benchmarks/results`)."""

import numpy as np
import pytest

from benchmarks import stdlib_corpus
from benchmarks import transformer_lm

pytestmark = pytest.mark.tensorflow  # no backend involved: run once


def test_the_corpus_is_the_pinned_standard_library_files():
    train, validation, description = stdlib_corpus.load_corpus()
    assert not set(stdlib_corpus.TRAIN_FILES) & set(stdlib_corpus.VALIDATION_FILES)
    assert train.dtype == np.uint8 and description["train_bytes"] == train.size > 2_000_000
    assert description["validation_bytes"] == validation.size > 300_000
    # One separator after each file, and none inside: source files hold no NUL.
    assert np.sum(train == stdlib_corpus.SEPARATOR) == len(stdlib_corpus.TRAIN_FILES)
    assert description["python"].startswith("3.11")


def test_a_missing_corpus_file_is_named(tmp_path):
    (tmp_path / stdlib_corpus.TRAIN_FILES[0]).write_text("x = 1\n")
    with pytest.raises(ValueError, match=f"{stdlib_corpus.TRAIN_FILES[1]}' is missing"):
        stdlib_corpus.load_corpus(stdlib=str(tmp_path))


def test_windows_hold_inputs_and_their_next_bytes():
    text = np.arange(250, dtype=np.uint8)
    windows = stdlib_corpus.training_windows(text, 8, 5, seed=0)
    assert windows.shape == (5, 9)
    np.testing.assert_array_equal(np.diff(windows, axis=1), 1)  # consecutive bytes
    held_out = stdlib_corpus.validation_windows(text, 8)
    assert held_out.shape == (31, 9)
    np.testing.assert_array_equal(held_out[1, 0], held_out[0, -1])  # every byte predicted once


def row(method, target, seed, perplexity, step_ms, steps=100, embeddings="dense", block=None):
    return {
        "method": method, "target_sparsity": target, "embeddings": embeddings, "seed": seed,
        "steps": steps, "validation_perplexity": perplexity, "step_ms_median": step_ms,
        "block_sparsity": block, "embedding_sparsity": None, "commit": "abc", "machine": "m",
        "command": "python -m benchmarks.transformer_lm",
    }


def test_table_compares_each_row_with_dense_of_the_same_steps():
    rows = [
        row("dense", None, 0, 4.0, 100.0),
        row("dense", None, 1, 4.4, 100.0),
        row("dense_2x", None, 0, 3.5, 101.0, steps=200),
        row("st3", 0.9, 0, 4.4, 105.0, block=0.9),
        row("st3", 0.9, 1, 4.6, 107.0, block=0.9),
        row("gmp_n_m", 0.5, 0, 4.2, 120.0, block=0.5),
    ]
    lines = transformer_lm.table(rows).splitlines()
    st3 = next(line for line in lines if line.startswith("| st3 |"))
    # Means over seeds: 4.5 against dense's 4.2; 106 ms against 100 ms.
    assert "| 90 % | dense | 2 | 100 | 4.500 | 1.071x | 90.0 % | - | 106.0 | 1.060x |" in st3
    dense_2x = next(line for line in lines if line.startswith("| dense_2x |"))
    assert "| 200 | 3.500 | - |" in dense_2x  # no dense row of 200 steps to compare with
    assert any(line.startswith("| gmp_n_m | 50 % |") for line in lines)


def test_the_sweep_runs_n_m_and_dense_rows_once_per_seed():
    planned = list(transformer_lm.planned_rows(["dense", "gmp", "gmp_n_m"], [0.5, 0.9], [0, 1]))
    assert planned == [
        ("dense", None, 0), ("gmp", 0.5, 0), ("gmp", 0.9, 0), ("gmp_n_m", 0.5, 0),
        ("dense", None, 1), ("gmp", 0.5, 1), ("gmp", 0.9, 1), ("gmp_n_m", 0.5, 1),
    ]


def test_plot_draws_the_sparse_rows_against_dense(tmp_path):
    rows = [
        row("dense", None, 0, 4.0, 100.0),
        row("dense_2x", None, 0, 3.5, 101.0, steps=200),
        row("st3", 0.5, 0, 4.1, 105.0, block=0.5),
        row("st3", 0.9, 0, 4.4, 105.0, block=0.9),
        row("gmp", 0.9, 0, 4.9, 105.0, block=0.9),
    ]
    path = tmp_path / "lm.png"
    transformer_lm.plot(rows, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_st3_rows_differ_in_scope_and_rescaling_only():
    methods = {
        name: transformer_lm.sparsity_method(name, 0.9, 100)
        for name in ("st3", "st3_sigma", "st3_sigma_rescale")
    }
    assert [(m.scope, m.rescale) for m in methods.values()] == [
        ("global", False), ("sigma", False), ("sigma", True)
    ]
    assert len({repr(m.schedule) for m in methods.values()}) == 1
