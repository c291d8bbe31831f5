"""What a search writes into its run folder: frontier.csv, summary.md, search.json, frontier.png,
the chosen file under ship/, and the frontier's TensorBoard scalars (compressor/search/frontier.py
decides; this module only writes)."""

import csv
import json
import shutil
import time
from pathlib import Path

from compressor.report.table import markdown

COLUMNS = [
    "recipe",
    "runtime",
    "precision",
    "static_shape",
    "file",
    "val/acc",
    "val_drop",
    "test/acc",
    "test_drop",
    "size_mb",
    "smaller",
    "latency/b1_ms",
    "speedup_b1",
    "latency/b64_ms",
    "speedup_b64",
    "stages",
    "frontier",
    "chosen",
    "within_budget",
    "certified",
    "label",
    "path",
]  # certified: None where the file was not tested (compressor/certify.py); label and path: its answers in
# its trial's correct.json


def write(out: Path, result: dict, rows: list[dict], gain: str, s, writer) -> None:
    front = {id(r) for r in result["frontier"]}
    table = []
    for r in sorted(rows, key=lambda r: -r[gain]):
        shown = id(r) in front or r is result["chosen"]  # test figures: the frontier and the chosen file only
        table.append(
            {
                **{k: r.get(k) for k in COLUMNS},
                "frontier": id(r) in front,
                "chosen": r is result["chosen"],
                "within_budget": r["val_drop"] <= result["max_drop"],
                **({} if shown else {"test/acc": None, "test_drop": None}),
            }
        )
    with (out / "frontier.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(table)
    if result["chosen"]:
        (out / "ship").mkdir(exist_ok=True)
        path = Path(result["chosen"]["path"])
        for p in [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]:
            shutil.copy2(p, out / "ship" / p.name)
    b = result["baseline"]
    lines = [
        f"# Search: {s.objective} on {s.runtime} within {result['max_drop']:g} validation points",
        "",
        f"Baseline: val {b['val/acc']:.4f}, test {b['test/acc']:.4f}, {b['compress/size_mb']:.3f} MB, "
        f"b1 {b['latency/b1_ms']:.3f} ms, b64 {b['latency/b64_ms']:.4f} ms/img. "
        f"{len(rows)} files of full-recipe trials; the frontier:",
        "",
        "",
    ]
    shown = []
    for r in result["frontier"]:
        slower = " slower than baseline" if r["speedup_b1"] < 1 or r["speedup_b64"] < 1 else ""
        mark = "**chosen**" if r is result["chosen"] else "over budget" if r["val_drop"] > result["max_drop"] else ""
        shape = " static" if r.get("static_shape") else ""
        shown.append(
            {
                "recipe": r["recipe"],
                "runtime": f"{r['runtime']} {r['precision']}{shape}",
                "file": r["file"],
                "val acc": f"{r['val/acc']:.4f}",
                "Δ val (pts)": f"{-r['val_drop']:+.2f}",
                "test acc": f"{r['test/acc']:.4f}",
                "Δ test (pts)": f"{-r['test_drop']:+.2f}",
                "size ×": f"{r['smaller']:.1f}",
                "b1 ×": f"{r['speedup_b1']:.2f}",
                "b64 ×": f"{r['speedup_b64']:.2f}",
                "": f"{mark}{slower}",
            }
        )
    lines[-1:] = [markdown(shown) if shown else "(no file)"]
    (out / "summary.md").write_text("\n".join([*lines, "", result["verdict"], ""]))
    (out / "search.json").write_text(json.dumps(result, indent=2))
    plot(out / "frontier.png", rows, result, gain)
    if writer:
        for i, r in enumerate(result["frontier"]):
            writer.log_metrics({"search/frontier_val_acc": r["val/acc"], f"search/frontier_{gain}": r[gain]}, step=i)
        writer.finalize("success")


def plot(path: Path, rows: list[dict], result: dict, gain: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    b = result["baseline"]
    for ax, key, base, name in (
        (
            axes[0],
            "latency/b1_ms" if gain != "speedup_b64" else "latency/b64_ms",
            b["latency/b1_ms"] if gain != "speedup_b64" else b["latency/b64_ms"],
            "latency (ms)",
        ),
        (axes[1], "size_mb", b["compress/size_mb"], "size (MB)"),
    ):
        ax.scatter([r[key] for r in rows], [r["val/acc"] for r in rows], c="0.6", s=14, label="trials' files")
        front = sorted(result["frontier"], key=lambda r: r[key])
        ax.plot([r[key] for r in front], [r["val/acc"] for r in front], "r.-", label=f"frontier ({gain})")
        ax.scatter([base], [b["val/acc"]], marker="*", s=120, c="k", label="baseline")
        if result["chosen"]:
            ax.scatter(
                [result["chosen"][key]],
                [result["chosen"]["val/acc"]],
                s=120,
                facecolors="none",
                edgecolors="b",
                label="chosen",
            )
        ax.axhline(b["val/acc"] - result["max_drop"] / 100, ls=":", c="0.4", label="budget")
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("validation accuracy (the file's own)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tensorboard(cfg, out: Path):
    if not cfg.get("logger"):
        return None
    from hydra.utils import instantiate

    return instantiate(cfg.logger, save_dir=str(out), version="search")


class Phases:
    """Wall minutes per phase of the search."""

    def __init__(self):
        self.minutes, self.start = {}, time.monotonic()

    def end(self, phase: str) -> None:
        now = time.monotonic()
        self.minutes[phase], self.start = (now - self.start) / 60, now


def epochs_spent(records) -> dict:
    """Training epochs over every trial: trained, and taken from an earlier fit instead."""
    stages = [s for r in records for s in r.get("stages", [])]
    return {"trained": sum(s["epochs_trained"] for s in stages), "reused": sum(s["epochs_reused"] for s in stages)}


def spent(result: dict) -> str:
    m, e = result["minutes"], result["epochs"]
    return (
        f"[{sum(m.values()):.1f} min: "
        + ", ".join(f"{k} {v:.1f}" for k, v in m.items())
        + f"; {e['reused']} of {e['trained'] + e['reused']} training epochs reused"
        + (f"; {len(result['outclassed'])} trial(s) not promoted: they cannot win" if result.get("outclassed") else "")
        + "]"
    )
