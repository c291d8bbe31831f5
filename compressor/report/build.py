"""Summary table (markdown + CSV) and plots from any directory of runs: it reads results.json
files and nothing else, so partial sweeps and hand-collected folders work alike."""

import csv
import json
import logging
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from compressor.report.plots import plot
from compressor.report.table import markdown
from compressor.results import problem

log = logging.getLogger(__name__)

COLUMNS = [
    ("test/acc", "test acc"),
    ("delta", "Δ acc vs baseline (pts)"),
    ("compress/size_mb", "size MB"),
    ("ratio", "compression ×"),
    ("latency/b1_ms", "latency b1 ms/img"),
    ("latency/b64_ms", "latency b64 ms/img"),
    ("speedup_b1", "speed-up b1 ×"),
    ("speedup_b64", "speed-up b64 ×"),
    ("compress/params", "params"),
    ("compress/nonzero_params", "non-zero params"),
    ("compress/macs", "MACs"),
    ("compress/sparsity", "sparsity"),
    ("kd/agreement", "agreement with teacher"),
    ("deploy/b1", "best runtime b1"),
    ("deploy/b64", "best runtime b64"),
]
TEXT = (
    "deploy/b1",
    "deploy/b64",
)  # which file on which runtime: with an export (compressor/runtimes/deploy.py)


def load_runs(root: Path) -> list[dict]:
    """Every results.json below `root` that is one; each other file is named in one warning line."""
    runs = []
    for path in sorted(Path(root).rglob("results.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # JSON only: reading a file never runs code
            log.warning("skipping %s: not readable as JSON (%s)", path, type(exc).__name__)
            continue
        why = problem(r)
        if why:
            log.warning("skipping %s: %s", path, why)
            continue
        r["_path"] = str(path)
        runs.append(r)
    return runs


def derived(r: dict) -> dict:
    """Per-run figures relative to the baseline measured in the same process."""
    b = r["baseline"]
    out = {k: r.get(k) for k, _ in COLUMNS if k in r}
    out["delta"] = 100 * (r["test/acc"] - b["test/acc"])
    out["ratio"] = b["compress/size_mb"] / r["compress/size_mb"]
    out["speedup_b1"] = b["latency/b1_ms"] / r["latency/b1_ms"]
    out["speedup_b64"] = b["latency/b64_ms"] / r["latency/b64_ms"]
    out["val/acc"] = r.get("val/acc")
    out["kd/agreement"] = r.get("kd", {}).get("test/agreement")
    for batch in ("b1", "b64"):
        best = r.get("deploy", {}).get(batch)
        if isinstance(best, dict):
            acc = f", acc {best['test/acc']:.4f}" if isinstance(best.get("test/acc"), float) else ""
            slower = ", SLOWER than the baseline" if best.get("slower_than_baseline") else ""
            static = ", static shape" if best.get("static_shape") else ""
            out[f"deploy/{batch}"] = (
                f"{best.get('runtime')} {best.get('file')} "
                f"({best.get(f'latency/{batch}_ms', 0):.4f} ms{static}{acc}{slower})"
            )
    return out


def baseline_row(r: dict) -> dict:
    b = r["baseline"]
    out = {k: b.get(k) for k, _ in COLUMNS if k in b}
    out.update(delta=0.0, ratio=1.0, speedup_b1=1.0, speedup_b64=1.0, **{"val/acc": b.get("val/acc")})
    return out


def rows(runs: list[dict]) -> list[dict]:
    """One row per (dataset, model, label); seeds folded into mean and std. The baseline row is the
    reference model the runs compressed (their shared cached baseline)."""
    groups = defaultdict(list)
    curves = {}
    for r in runs:
        run = r["run"]
        base_key = (run["dataset"], r["baseline"]["model"], "baseline")
        groups[base_key].append((run["seed"], baseline_row(r)))
        curves.setdefault(base_key, r["baseline"].get("val/acc_per_epoch") or [])
        if run["technique"] not in ("baseline", "sensitivity"):  # a scan compresses nothing: its plots, not a row
            key = (run["dataset"], run["model"], run.get("label", run["technique"]))
            groups[key].append((run["seed"], derived(r)))
            curves.setdefault(key, r.get("val/acc_per_epoch") or [])
    out = []
    for (dataset, model, label), items in groups.items():
        by_seed = {}
        for seed, values in items:  # the baseline appears once per run: keep one per seed
            by_seed.setdefault(seed, values)
        row = {
            "dataset": dataset,
            "model": model,
            "label": label,
            "seeds": len(by_seed),
            "val_curve": curves.get((dataset, model, label), []),
        }
        for key, _ in COLUMNS + [("val/acc", "")]:
            values = [v[key] for v in by_seed.values() if v.get(key) is not None]
            if key in TEXT:  # the winner of most seeds
                row[key], row[key + "_std"] = (statistics.mode(values) if values else None), 0.0
                continue
            row[key] = statistics.mean(values) if values else None
            row[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(row)
    out.sort(key=lambda r: (r["dataset"], r["label"] != "baseline", r["label"]))
    return out


def fmt(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    std = row.get(key + "_std") or 0.0
    if key in TEXT:
        return str(v)
    if key in ("compress/params", "compress/nonzero_params", "compress/macs"):
        return f"{v:,.0f}"
    text = (
        f"{v:.4f}"
        if key
        in ("test/acc", "kd/agreement", "compress/sparsity", "latency/b1_ms", "latency/b64_ms", "compress/size_mb")
        else f"{v:.2f}"
    )
    return text + (f" ± {std:.4f}" if std and key in ("test/acc", "delta", "kd/agreement") else "")


def write_tables(table: list[dict], out: Path) -> None:
    header = ["dataset", "model", "run", "seeds"] + [title for _, title in COLUMNS]
    cells = [
        dict(
            zip(
                header,
                [row["dataset"], row["model"], row["label"], str(row["seeds"])] + [fmt(row, k) for k, _ in COLUMNS],
            )
        )
        for row in table
    ]
    lines = markdown(cells, header).split("\n")
    notes = [
        "",
        "Ratios (compression ×, speed-up ×) are against the baseline measured in the same process as each run; "
        "values below 1 mean larger or slower. Latency: median ms per image, torch threads pinned. "
        "MACs and parameters of quantized models are counted on their float graph.",
    ]
    (out / "summary.md").write_text("\n".join(lines + notes) + "\n")
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["dataset", "model", "run", "seeds"] + [k for k, _ in COLUMNS] + [k + "_std" for k, _ in COLUMNS]
        )
        for row in table:
            writer.writerow(
                [row["dataset"], row["model"], row["label"], row["seeds"]]
                + [row.get(k) for k, _ in COLUMNS]
                + [row.get(k + "_std") for k, _ in COLUMNS]
            )


def build(root, out=None) -> Path:
    root = Path(root)
    out = Path(out) if out else root
    runs = load_runs(root)
    if not runs:
        raise FileNotFoundError(f"{root}: no results.json below this folder")
    table = rows(runs)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(table, out)
    best = root / "optimization_results.yaml"
    if best.is_file():  # an Optuna sweep: say which trial won
        with open(out / "summary.md", "a") as f:
            f.write("\n## Best trial (Optuna)\n\n```yaml\n" + best.read_text() + "```\n")
    plot(table, out)
    sensitivity_plots(runs, out)
    with open(out / "summary.md", "a") as f:
        f.write(distillation_note(runs))
    return out / "summary.md"


def distillation_note(runs: list[dict]) -> str:
    """What distillation added: each KD student against the same student trained alone (a kd run
    whose only loss term is ce) on the same dataset, seeds paired; or why the folder cannot say."""
    kd = [r for r in runs if r["run"]["technique"] == "kd" and r.get("stages")]
    if not kd:
        return ""

    def key(r):
        return r["run"]["dataset"], r["run"]["model"], r["run"].get("seed")

    def is_alone(r):
        return set(r["stages"][0].get("weights", {})) == {"ce"}

    alone = {key(r): r for r in kd if is_alone(r)}
    lines = []
    by_label = defaultdict(list)
    for r in (r for r in kd if not is_alone(r)):
        twin = alone.get(key(r))
        by_label[(r["run"]["dataset"], r["run"]["model"], r["run"]["label"])].append(
            100 * (r["test/acc"] - twin["test/acc"]) if twin else None
        )
    for (dataset, model, label), deltas in sorted(by_label.items()):
        paired = [d for d in deltas if d is not None]
        if not paired:
            lines.append(
                f"- {dataset}, {model}, {label}: no student-alone run with the same seed in this folder "
                "(add technique=kd technique.loss=ce), so this table cannot say what distillation added."
            )
            continue
        mean = statistics.mean(paired)
        if len(paired) > 1:
            std = statistics.stdev(paired)
            verdict = (
                "no clear gain: within the seeds' spread" if abs(mean) <= std else "better" if mean > 0 else "worse"
            ) + f" (± {std:.2f} over {len(paired)} seeds)"
        else:
            verdict = ("better" if mean > 0 else "worse" if mean < 0 else "no gain") + " (one seed: noise not measured)"
        lines.append(
            f"- {dataset}, {model}, {label}: {mean:+.2f} pts test accuracy against the same student "
            f"trained alone: **{verdict}**."
        )
    return "\n## Distillation against the student trained alone\n\n" + "\n".join(lines) + "\n" if lines else ""


def sensitivity_plots(runs: list[dict], out: Path) -> list[Path]:
    """The sensitivity scans' PNGs copied beside the sweep's plots, and linked from summary.md."""
    files = []
    for r in runs:
        if r["run"]["technique"] != "sensitivity":
            continue
        folder = Path(r["_path"]).parent
        for png in sorted(folder.glob("sensitivity_*.png")):
            target = out / f"{png.stem}_{r['run']['dataset']}_{r['run']['model']}_seed{r['run'].get('seed')}.png"
            if target.resolve() != png.resolve():
                shutil.copyfile(png, target)
            files.append(target)
    if files:
        with open(out / "summary.md", "a") as f:
            f.write(
                "\n## Per-layer sensitivity (technique=sensitivity; validation drop, no fine-tuning)\n\n"
                + "\n".join(f"![{p.stem}]({p.name})" for p in files)
                + "\n"
            )
    return files
