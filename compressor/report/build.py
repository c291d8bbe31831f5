"""Summary table (markdown + CSV) and plots from any directory of runs: it reads results.json
files and nothing else, so partial sweeps and hand-collected folders work alike. It names no
technique: each one's columns, whether its runs are rows, and its own section of summary.md are
declared on its stage class (compressor/techniques/base.py), found through the project's
conf/technique/ files."""

import csv
import json
import logging
import statistics
from collections import defaultdict
from functools import lru_cache
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
    # then each technique's own (`Stage.columns`, `extra_columns`), then which file to ship
]
SHIP = [("deploy/b1", "best runtime b1"), ("deploy/b64", "best runtime b64")]
TEXT = (
    "deploy/b1",
    "deploy/b64",
)  # which file on which runtime: with an export (compressor/runtimes/deploy.py)


@lru_cache(maxsize=1)
def techniques() -> dict:
    """name -> stage class of each technique the project's conf/technique/ holds (its `_target_`, the
    one registry): what a technique adds to the report is declared on its class. Classes are read
    from the project's own configs, never from a results.json."""
    from compressor.errors import ConfigError
    from compressor.techniques import configured

    out = {}
    for name in configured.names():
        try:
            out[name] = configured.stage(name, "conf/technique ")[1]
        except ConfigError:  # the baseline and the pipeline are no stage
            continue
    return out


def extra_columns() -> dict:
    """Each technique's own columns: {key: (results.json block, metric, title)}."""
    return {k: v for cls in techniques().values() for k, v in cls.columns.items()}


def columns() -> list[tuple[str, str]]:
    return [*COLUMNS, *((k, title) for k, (_, _, title) in extra_columns().items()), *SHIP]


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
    for key, (block, metric, _) in extra_columns().items():
        out[key] = (r.get(block) or {}).get(metric)
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
    out = {k: b.get(k) for k, _ in columns() if k in b}
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
        cls = techniques().get(run["technique"])
        if run["technique"] != "baseline" and (cls is None or cls.in_table):  # a scan's plots, not a row
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
        for key, _ in columns() + [("val/acc", "")]:
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
    own = key in extra_columns()  # a technique's own column: a fraction, with its spread
    text = (
        f"{v:.4f}"
        if own or key in ("test/acc", "compress/sparsity", "latency/b1_ms", "latency/b64_ms", "compress/size_mb")
        else f"{v:.2f}"
    )
    return text + (f" ± {std:.4f}" if std and (own or key in ("test/acc", "delta")) else "")


def write_tables(table: list[dict], out: Path) -> None:
    shown = columns()
    header = ["dataset", "model", "run", "seeds"] + [title for _, title in shown]
    cells = [
        dict(
            zip(
                header,
                [row["dataset"], row["model"], row["label"], str(row["seeds"])] + [fmt(row, k) for k, _ in shown],
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
        writer.writerow(["dataset", "model", "run", "seeds"] + [k for k, _ in shown] + [k + "_std" for k, _ in shown])
        for row in table:
            writer.writerow(
                [row["dataset"], row["model"], row["label"], row["seeds"]]
                + [row.get(k) for k, _ in shown]
                + [row.get(k + "_std") for k, _ in shown]
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
    with open(out / "summary.md", "a") as f:  # each technique's own part, from its runs
        for name, cls in techniques().items():
            f.write(cls.summarize([r for r in runs if r["run"]["technique"] == name], out))
    return out / "summary.md"
