import pytest

from benchmarks import accuracy_vs_sparsity as sweep

pytestmark = pytest.mark.tensorflow


def run(model, label, target, seed, accuracy, mflops):
    return {
        "model": model, "label": label, "target": target, "seed": seed,
        "test_accuracy": accuracy, "sparsity": target or 0.0,
        "sparse_mflops": mflops, "dense_mflops": 1.0, "train_seconds": 1.0,
        "epochs": 5, "lr": 0.1,
    }


def test_aggregate_averages_seeds_and_comparisons_follow_targets():
    runs = {
        "a": run("m", "dense", None, 0, 0.90, 1.0),
        "b": run("m", "gmp_tfmot", 0.9, 0, 0.85, 0.1),
        "c": run("m", "gmp_tfmot", 0.9, 1, 0.87, 0.1),
        "d": run("m", "rec", 0.9, 0, 0.89, 0.1),
        "e": run("m", "rec", 0.9, 1, 0.89, 0.1),
        "f": run("m", "rec", 0.95, 0, 0.875, 0.05),
    }
    rows = sweep.aggregate(runs)
    tfmot = [r for r in rows if r["method"] == "gmp_tfmot"][0]
    assert tfmot["seeds"] == 2
    assert tfmot["accuracy"] == pytest.approx(86.0)
    assert tfmot["accuracy_std"] == pytest.approx(1.0)
    lines = "\n".join(sweep.comparisons(rows, "rec"))
    assert "vs tfmot GMP 86.00 (+3.00)" in lines
    assert "vs dense 90.00 (-1.00)" in lines
    # The 95 % point is as accurate as tfmot at 90 % with half the MFLOPs;
    # nothing sparser was measured, so that is reported as a bound.
    assert ("rec's sparsest point is already more accurate (87.50 %) at "
            "0.0500 MFLOPs (0.50x; not measured lower)") in lines


def test_mflops_at_accuracy_interpolates_in_log_mflops():
    curve = [(0.01, 80.0), (0.1, 90.0), (1.0, 89.0)]
    assert sweep.mflops_at_accuracy(curve, 85.0) == pytest.approx(10 ** -1.5)
    assert sweep.mflops_at_accuracy(curve, 79.0) == pytest.approx(0.01)
    assert sweep.mflops_at_accuracy(curve, 89.5) == pytest.approx(10 ** -1.5 * 10 ** 0.45)
    assert sweep.mflops_at_accuracy(curve, 91.0) is None


def test_resume_refuses_runs_of_another_budget():
    runs = {"a": run("m", "dense", None, 0, 0.9, 1.0), "b": run("n", "dense", None, 0, 0.9, 1.0)}
    sweep.check_resumable(runs, {"m": 5, "n": 5}, 0.1, "out")
    sweep.check_resumable(runs, {"m": 5}, 0.1, "out")  # n is not swept now
    with pytest.raises(sweep.app.UsageError, match="m runs with epochs=5.*epochs=15"):
        sweep.check_resumable(runs, {"m": 15}, 0.1, "out")
    with pytest.raises(sweep.app.UsageError, match="lr=0.05"):
        sweep.check_resumable(runs, {"m": 5}, 0.05, "out")
    runs["c"] = dict(run("m", "gmp", 0.9, 0, 0.9, 1.0), epochs=15)
    with pytest.raises(sweep.app.UsageError, match="mix budgets"):
        sweep.stored_budgets(runs)


def test_check_armsim_fails_before_training_when_not_set_up(tmp_path, monkeypatch):
    from benchmarks.armsim import check_armsim

    monkeypatch.setenv("ARMSIM", str(tmp_path))
    with pytest.raises(RuntimeError, match="setup.sh"):
        check_armsim()
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "libicount.so").write_bytes(b"")
    with pytest.raises(RuntimeError, match="ai_edge_litert"):
        check_armsim()
    (tmp_path / "site" / "ai_edge_litert").mkdir(parents=True)
    check_armsim()


def test_accuracy_at_mflops_interpolates_in_log_mflops_inside_the_curve():
    curve = [(0.1, 90.0), (0.01, 80.0)]
    assert sweep.accuracy_at_mflops(curve, 10 ** -1.5) == pytest.approx(85.0)
    assert sweep.accuracy_at_mflops(curve, 0.1) == pytest.approx(90.0)
    assert sweep.accuracy_at_mflops(curve, 0.2) is None
    assert sweep.accuracy_at_mflops(curve, 0.005) is None
    assert sweep.accuracy_at_mflops([(0.1, 90.0)], 0.1005) == pytest.approx(90.0)


def test_macs_budget_table_compares_methods_at_the_shares_asked_for():
    runs = {
        "a": run("m", "dense", None, 0, 0.91, 1.0),
        "b": run("m", "rec_macs", 0.9, 0, 0.90, 0.1),
        "c": run("m", "rec_macs", 0.9, 1, 0.88, 0.1),
        "d": run("m", "weights", 0.9, 0, 0.90, 0.2),
        "e": run("m", "weights", 0.95, 0, 0.86, 0.05),
        "f": run("m", "uniform", 0.9, 0, 0.85, 0.1),
    }
    lines = sweep.macs_budget_table(sweep.aggregate(runs), ["dense", "rec_macs", "weights", "uniform"])
    row = [line for line in lines if line.startswith("| 10 %")][0]
    cells = [cell.strip() for cell in row.split("|")[2:-1]]
    # 0.1 MFLOPs lies halfway between 0.05 and 0.2 in log MFLOPs: 88.00;
    # the best cell is bold.
    assert cells == ["**89.00 (n=2, 90.0 %)**", "[88.00] (n=1)", "[85.00] (n=1)"]


def test_n_m_table_averages_seeds_per_model_and_method():
    from benchmarks import n_m_accuracy

    def row(method, seed, accuracy, held):
        return {"model": "m", "method": method, "seed": seed, "epochs": 2,
                "test_accuracy": accuracy, "sparsity": 0.5, "n_m_layers_held": held,
                "n_m_layers_checked": 3, "train_seconds": 1.0, "command": "cmd",
                "commit": "abc", "machine": "x86"}

    text = n_m_accuracy.table([
        row("gmp_n_m", 0, 0.80, 3), row("gmp_n_m", 1, 0.82, 3), row("gmp", 0, 0.85, 1),
    ], "2:4")
    assert "| m | gmp_n_m | 2 | 81.00 +- 1.00 | 50.0 % | 3/3 | 2 | abc | x86 |" in text
    assert "| m | gmp | 1 | 85.00 +- 0.00 | 50.0 % | 1/3 |" in text
    assert "Commands: `cmd`" in text
