"""The report on a synthetic sweep directory (no training)."""

import csv
import json

from compressor.report.__main__ import main as report_main
from compressor.report.build import build
from compressor.report.plots import pareto


def result(technique, label, seed, acc, size, b1, b64, base_acc=0.98, base_size=2.0):
    base = {
        "model": "simple_cnn",
        "test/acc": base_acc,
        "val/acc": base_acc,
        "compress/size_mb": base_size,
        "latency/b1_ms": 1.0,
        "latency/b64_ms": 0.5,
        "compress/params": 1000,
        "compress/nonzero_params": 1000,
        "compress/macs": 5000,
        "compress/sparsity": 0.0,
        "val/acc_per_epoch": [0.9, 0.95, 0.97],
    }
    return {
        "run": {"technique": technique, "label": label, "dataset": "mnist5k", "model": "simple_cnn", "seed": seed},
        "test/acc": acc,
        "val/acc": acc,
        "compress/size_mb": size,
        "latency/b1_ms": b1,
        "latency/b64_ms": b64,
        "compress/params": 1000,
        "compress/nonzero_params": 500,
        "compress/macs": 5000,
        "compress/sparsity": 0.5,
        "val/acc_per_epoch": [acc - 0.01, acc],
        "baseline": base,
    }


def write(sweep, i, r):
    folder = sweep / f"{i}_job"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(r))


def test_report_from_synthetic_sweep(tmp_path):
    write(tmp_path, 0, result("baseline", "baseline", 0, 0.98, 2.0, 1.0, 0.5))
    write(tmp_path, 1, result("prune", "prune 0.5", 0, 0.97, 1.0, 2.0, 0.5))
    write(tmp_path, 2, result("prune", "prune 0.5", 1, 0.95, 1.0, 2.0, 0.5))
    write(tmp_path, 3, result("quant", "quant static torch", 0, 0.98, 0.5, 0.5, 0.1))
    (tmp_path / "4_broken").mkdir()
    (tmp_path / "4_broken" / "results.json").write_text("{not json")
    path = build(tmp_path)
    text = path.read_text()
    assert "| mnist5k | simple_cnn | prune 0.5 | 2 | 0.9600 ± 0.0141 | -2.00 ± 1.4142 |" in text
    quant = next(line for line in text.splitlines() if "quant static" in line)
    assert "| 4.00 |" in quant and "| 2.00 | 5.00 |" in quant  # compression 4x; speed-up b1 2x, b64 5x
    prune = next(line for line in text.splitlines() if "prune 0.5" in line)
    assert "| 0.50 |" in prune  # slower at batch 1: reported as a speed-up below 1
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert {r["run"] for r in rows} == {"baseline", "prune 0.5", "quant static torch"}
    for name in ("val_acc_bars.png", "acc_vs_size.png", "val_acc_per_epoch.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_pareto_front():
    points = [(2.0, 98.0), (1.0, 96.0), (0.5, 97.0), (3.0, 90.0)]
    assert pareto(points) == [2, 0]


def test_report_cli_on_empty_dir(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_the_report_says_what_distillation_added(tmp_path):
    def kd(i, seed, weights, acc):
        r = result(
            "kd",
            "kd ce from simple_cnn" if weights == {"ce": 1.0} else "kd ce_kl from simple_cnn",
            seed,
            acc,
            0.05,
            0.3,
            0.1,
        )
        r["stages"] = [{"stage": "kd", "weights": weights}]
        write(tmp_path, i, r)

    for seed, (alone, distilled) in enumerate([(0.950, 0.951), (0.960, 0.958), (0.955, 0.957)]):
        kd(2 * seed, seed, {"ce": 1.0}, alone)
        kd(2 * seed + 1, seed, {"ce": 0.5, "kl": 0.5}, distilled)
    text = build(tmp_path).read_text()
    note = text.split("## Distillation against the student trained alone")[1]
    assert "kd ce_kl from simple_cnn: +0.03 pts" in note and "no clear gain" in note and "3 seeds" in note
    assert "kd ce from simple_cnn:" not in note  # the student alone is the reference, not a row of its own


def test_a_kd_run_without_a_student_alone_is_said_to_prove_nothing(tmp_path):
    r = result("kd", "kd ce_kl from simple_cnn", 0, 0.95, 0.05, 0.3, 0.1)
    r["stages"] = [{"stage": "kd", "weights": {"ce": 0.5, "kl": 0.5}}]
    write(tmp_path, 0, r)
    assert "cannot say what distillation added" in build(tmp_path).read_text()


def test_one_table_writer_takes_rows_with_different_columns():
    """make bench's search rows carry `b1 ms/img` or `b64 ms/img` by objective: one table, a dash where
    a row has no value (the writer once raised KeyError there)."""
    from compressor.report.table import markdown

    text = markdown([{"file": "a", "b1 ms/img": 0.5}, {"file": "b", "b64 ms/img": 0.25, "note": None}])
    assert text.splitlines() == [
        "| file | b1 ms/img | b64 ms/img | note |",
        "|---|---|---|---|",
        "| a | 0.500 | – | – |",
        "| b | – | 0.250 | – |",
    ]


def test_a_run_slower_than_its_baseline_says_so_on_its_console_line():
    from compressor import results

    base = {"test/acc": 0.9, "compress/size_mb": 2.0, "latency/b1_ms": 0.5, "latency/b64_ms": 0.1}
    run = {
        "run": {"technique": "quant", "model": "simple_cnn", "dataset": "digits"},
        "baseline": base,
        "test/acc": 0.9,
        "compress/size_mb": 1.0,
    }
    assert "SLOWER than the baseline (8.0x its latency or more)" in results.summary_line(
        {**run, "latency/b1_ms": 4.0, "latency/b64_ms": 1.5}
    )  # fp16 on a CPU
    assert "SLOWER" not in results.summary_line({**run, "latency/b1_ms": 4.0, "latency/b64_ms": 0.1})  # one batch size
    assert "SLOWER" not in results.summary_line({**run, "latency/b1_ms": 0.3, "latency/b64_ms": 0.05})
