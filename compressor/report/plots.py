"""The sweep's plots (compressor/report/build.py writes them beside summary.md): accuracy against
size with the Pareto front, and the per-technique bars."""

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pareto(points):
    """Indices of points no other point beats on both size (smaller) and accuracy (higher)."""
    front = []
    for i, (s, a) in enumerate(points):
        if not any((s2 <= s and a2 >= a) and (s2 < s or a2 > a) for s2, a2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def side_legend(ax) -> None:
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def plot(table: list[dict], out: Path) -> list[Path]:
    files = []
    names = [f"{r['model']}: {r['label']}" for r in table]
    wrapped = [textwrap.fill(n, 38) for n in names]
    grey = ["tab:gray" if r["label"] == "baseline" else "tab:blue" for r in table]
    # 1. validation accuracy, baseline vs each compressed model (seed 000's bar chart)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.75 * len(table)))
    vals = [100 * (r["val/acc"] or 0) for r in table]
    y = list(range(len(table)))[::-1]
    ax.barh(y, vals, xerr=[100 * (r.get("val/acc_std") or 0) for r in table], color=grey)
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.1f}", va="center", fontsize=8)
    ax.set_yticks(y, wrapped, fontsize=8)
    ax.set_xlim(max(0, min(vals) - 10), 101)
    ax.set_xlabel("validation accuracy (%)")
    ax.set_title("Validation accuracy: baseline (grey) vs compressed models")
    files.append(save(fig, out / "val_acc_bars.png"))
    # 2. accuracy against size, Pareto front
    fig, ax = plt.subplots(figsize=(9, 5.5))
    pts = [(r["compress/size_mb"], 100 * r["test/acc"]) for r in table]
    markers = "osD^v<>PX*hp"
    front = pareto(pts)
    ax.plot(
        [pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="tab:red", label="Pareto front", zorder=1
    )
    for i, (r, (s_, a)) in enumerate(zip(table, pts)):
        ax.scatter(
            s_,
            a,
            marker=markers[i % len(markers)],
            s=60,
            zorder=3,
            color="tab:gray" if r["label"] == "baseline" else f"C{i % 10}",
            label=textwrap.fill(names[i], 45),
        )
    ax.set_xscale("log")
    ax.set_xlabel("size on disk (MB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy against size on disk")
    side_legend(ax)
    files.append(save(fig, out / "acc_vs_size.png"))
    # 3. validation accuracy per epoch: baseline training and each compressed run's own fits
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for r, name in zip(table, names):
        if r["val_curve"]:
            style = dict(color="black", linewidth=2.5) if r["label"] == "baseline" else {}
            ax.plot(
                range(1, len(r["val_curve"]) + 1),
                [100 * v for v in r["val_curve"]],
                marker="o",
                label=textwrap.fill(name, 45),
                **style,
            )
    ax.set_xlabel("epoch (baseline: training; compressed: fine-tuning / distillation, stages joined)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Validation accuracy per epoch, before (baseline) and after compression")
    side_legend(ax)
    files.append(save(fig, out / "val_acc_per_epoch.png"))
    return files
