"""technique=sensitivity as a Lightning callback: the prune and int8 scans of a trained model
(compressor/techniques/prune/scan.py, quant/scan.py), with no fine-tuning, written out.

Drops are in accuracy points against the unmodified model on the same data (positive = worse).
It runs as a zero-epoch fit and writes sensitivity.csv, two PNG plots, TensorBoard figures and
scalars, and the rows in results.json; the budget reads the same scans to choose per-layer
amounts and the layers that stay float."""

import copy
import csv
import logging
import statistics
from pathlib import Path

import torch
from torch import nn

from compressor import settings as s
from compressor.quant.ops import calibration_inputs
from compressor.techniques.callback import TechniqueCallback
from compressor.techniques.layers import select_layers
from compressor.techniques.prune.scan import prune_scan
from compressor.techniques.prune.settings import SEARCHED as SCAN_METHODS
from compressor.techniques.quant.scan import quant_layers, quant_scan
from compressor.techniques.sensitivity import settings as spec
from compressor.training.flags import torch_flags_kept

log = logging.getLogger(__name__)
GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]  # = conf budget.grid, for callers outside Hydra
FIELDS = ["kind", "method", "layer", "amount", "val/acc", "drop", "compress/macs", "saved"]


# -- outputs ----------------------------------------------------------------------------------
def write_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def figures(rows: list[dict], title: str) -> dict:
    """{file stem: matplotlib figure}: drop against amount per layer (one panel per method), and
    the per-layer int8 drops as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    methods = [m for m in SCAN_METHODS if any(r["method"] == m for r in rows)]
    if methods:
        fig, axes = plt.subplots(1, len(methods), figsize=(7 * len(methods), 5), squeeze=False)
        for ax, method in zip(axes[0], methods):
            mine = [r for r in rows if r["method"] == method]
            for i, layer in enumerate(dict.fromkeys(r["layer"] for r in mine)):
                pts = [(r["amount"], r["drop"]) for r in mine if r["layer"] == layer]
                ax.plot(
                    *zip(*pts),
                    marker="o",
                    markersize=3,
                    label=layer,
                    color=f"C{i % 10}",
                    linestyle="-" if i < 10 else "--",
                )
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xlabel("amount pruned in this layer alone")
            ax.set_ylabel("validation accuracy drop (points)")
            ax.set_title(f"{title}: {method}")
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        out["sensitivity_prune"] = fig
    only = [r for r in rows if r["method"] == "int8_only"]
    if only:
        but = {r["layer"]: r["drop"] for r in rows if r["method"] == "int8_all_but"}
        full = next(r["drop"] for r in rows if r["method"] == "int8_all")
        fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(only) + 2), 5))
        x = range(len(only))
        ax.bar([i - 0.2 for i in x], [r["drop"] for r in only], 0.4, label="only this layer int8")
        ax.bar([i + 0.2 for i in x], [but[r["layer"]] for r in only], 0.4, label="all layers but this one int8")
        ax.axhline(full, color="tab:red", linestyle="--", label=f"every layer int8 ({full:.2f})")
        ax.set_xticks(list(x), [r["layer"] for r in only], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("validation accuracy drop (points)")
        ax.set_title(f"{title}: static int8, per layer")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out["sensitivity_quant"] = fig
    return out


def write(rows: list[dict], folder: Path, title: str, logger=None) -> list[str]:
    """sensitivity.csv, PNGs, and (with a TensorBoard logger) the same figures and curves."""
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files = [str(write_csv(rows, folder / "sensitivity.csv"))]
    experiment = getattr(logger, "experiment", None) if logger else None
    for stem, fig in figures(rows, title).items():
        fig.savefig(folder / f"{stem}.png", dpi=110)
        files.append(str(folder / f"{stem}.png"))
        if hasattr(experiment, "add_figure"):
            experiment.add_figure(f"sensitivity/{stem.split('_')[1]}", fig)
        plt.close(fig)
    if hasattr(experiment, "add_scalar"):
        for r in rows:
            if r["kind"] == "prune":
                experiment.add_scalar(f"sensitivity/{r['method']}/{r['layer']}", r["drop"], round(100 * r["amount"]))
            elif r["method"] != "int8_all":
                experiment.add_scalar(f"sensitivity/{r['method']}/{r['layer']}", r["drop"], 0)
    return files


class Sensitivity(TechniqueCallback):
    """The scans as a zero-epoch stage: the model is measured, never changed."""

    needs = ("example_shape", "workdir")

    def __init__(self, example_shape=None, workdir: str = ".", **settings):
        """`settings`: the keys of settings.Sensitivity, each checked; outside a job `grid` defaults
        to GRID (a job's is budget.grid)."""
        values = s.make(spec.Sensitivity, {"grid": GRID, **settings})
        s.assign(self, values)
        self.grid = sorted(float(a) for a in values["grid"])
        self.example_shape, self.workdir = example_shape, workdir
        self.rows, self.files = [], []

    def check(self, model: nn.Module) -> None:
        select_layers(model, self.include, self.exclude)

    def on_fit_start(self, trainer, pl_module):
        model, dm = copy.deepcopy(pl_module.model).cpu().eval(), trainer.datamodule
        layers = list(select_layers(model, self.include, self.exclude))
        loader = dm.val_dataloader()
        self.rows = prune_scan(model, loader, layers, self.grid, self.methods, self.example_shape)
        if self.quant:
            calibration = list(calibration_inputs(dm.train_dataloader(), self.calibration_batches))
            with torch_flags_kept():  # restored after: int8 kernels have no deterministic twin to warn about
                torch.use_deterministic_algorithms(False)
                self.rows += quant_scan(model, loader, calibration, quant_layers(model, layers), self.example_shape)
        if trainer.global_rank == 0:
            title = f"{type(model).__name__}, {len(loader.dataset)} validation images"
            self.files = write(self.rows, Path(self.workdir), title, trainer.logger)
        means = {
            (r["method"], r["layer"]): statistics.mean(
                q["drop"]
                for q in self.rows
                if q["kind"] == "prune" and (q["method"], q["layer"]) == (r["method"], r["layer"])
            )
            for r in self.rows
            if r["kind"] == "prune"
        }
        for method in self.methods:
            mine = {layer: d for (m, layer), d in means.items() if m == method}
            if mine:
                worst = max(mine, key=mine.get)
                log.info(
                    "sensitivity (%s): most sensitive %s (mean drop %.2f pts over the grid), least %s (%.2f)",
                    method,
                    worst,
                    mine[worst],
                    min(mine, key=mine.get),
                    min(mine.values()),
                )

    def summary(self) -> dict:
        return {
            "grid": self.grid,
            "methods": self.methods,
            "rows": self.rows,
            "files": [Path(f).name for f in self.files],
        }
