"""Per-layer sensitivity of a trained model, with no fine-tuning (Distiller's and NNI's analysis).

Pruning: for every prunable layer and every amount of a grid, the validation accuracy when only
that layer is pruned (L1 within the layer, and its channels where the layer allows it).
Quantization: for every Conv2d/Linear, the accuracy when only that layer is int8, and when every
layer but that one is int8 (torch.ao FX static, per-channel, calibrated like the quant stage).

Drops are in accuracy points against the unmodified model on the same data (positive = worse).
`technique=sensitivity` runs the scans as a zero-epoch stage and writes sensitivity.csv, two PNG
plots, TensorBoard figures and scalars, and the rows in results.json; compressor.search.budget reads the
same rows to choose per-layer amounts and the layers that stay float."""
import copy
import csv
import itertools
import logging
import statistics
from pathlib import Path

import lightning as L
import torch
from torch import nn

from compressor import measure
from compressor.callbacks.prune import Pruning, classifier, make_permanent, select_layers
from compressor.quant.ops import calibration_inputs
from compressor import rules
from compressor.choices import SCAN_METHODS
from compressor.stages import sensitivity as spec
from compressor.errors import brief
from compressor.training.flags import torch_flags_kept

log = logging.getLogger(__name__)
GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]  # = conf budget.grid, for callers outside Hydra
FIELDS = ["kind", "method", "layer", "amount", "val/acc", "drop", "compress/macs", "saved"]


def accuracy(model, loader) -> float:
    return measure.accuracy(*measure.predict(model, loader))


def channel_layers(model: nn.Module, layers: dict) -> dict:
    """Layers whose output channels can go: all chosen ones but the classifier (its outputs are the classes)."""
    last = classifier(model)
    return {n: m for n, m in layers.items() if m not in last}


def pruned(model: nn.Module, method: str, amounts: dict, example_shape) -> nn.Module:
    """A pruned copy: each layer of `amounts` by its amount, nothing else touched."""
    out = copy.deepcopy(model).cpu()
    Pruning(method=method, amounts=amounts, example_shape=example_shape).apply(out, 1.0)
    make_permanent(out)
    return out


def prune_scan(model, loader, layers: list[str], grid, methods, example_shape) -> list[dict]:
    """Rows per (method, layer, amount): validation accuracy, drop, MACs, and `saved`: weights
    zeroed (unstructured) or MACs removed (channel) against the unpruned model."""
    base = accuracy(model, loader)
    example = torch.randn(*example_shape)
    base_macs, base_nonzero = measure.macs(model, example), measure.parameters(model)["compress/nonzero_params"]
    rows = []
    for method in methods:
        names = list(channel_layers(model, {n: dict(model.named_modules())[n] for n in layers})) \
            if method == "channel" else layers
        skipped = set()
        for name, amount in itertools.product(names, grid):
            if name in skipped:
                continue
            try:
                m = pruned(model, method, {name: amount}, example_shape)
                macs = measure.macs(m, example)
            except Exception as exc:  # a layer whose pruned model no longer runs (a ViT's qkv reshape)
                skipped.add(name)
                log.warning("sensitivity (%s): skipping %s, its pruned model does not run (%s)", method, name,
                            brief(exc))
                continue
            if method == "channel" and macs == base_macs:
                continue  # Torch-Pruning keeps a layer whole rather than leave it no channel (e.g. 0.98 of 32)
            acc = accuracy(m, loader)
            rows.append({"kind": "prune", "method": method, "layer": name, "amount": float(amount), "val/acc": acc,
                         "drop": 100 * (base - acc), "compress/macs": macs,
                         "saved": base_macs - macs if method == "channel" else
                         base_nonzero - measure.parameters(m)["compress/nonzero_params"]})
    return rows


def int8(model, example_shape, calibration, keep_float=(), only=None, api="fx") -> nn.Module:
    """Static int8 of a copy (torch.ao FX or torchao pt2e), calibrated on the given input batches."""
    from compressor.quant import engine

    flow = engine(api)
    prepared = flow.prepare_static(copy.deepcopy(model).cpu(), torch.randn(*example_shape), keep_float, only)
    with torch.no_grad():
        for x in calibration:
            prepared(x.cpu())
    return flow.convert(prepared)


def quant_scan(model, loader, calibration, layers: list[str], example_shape, api="fx") -> list[dict]:
    base = accuracy(model, loader)
    try:
        full = accuracy(int8(model, example_shape, calibration, api=api), loader)
    except Exception as exc:  # FX cannot trace every architecture
        log.warning("sensitivity (int8): skipping the quantization scan, the model does not quantize (%s)",
                    brief(exc))
        return []
    rows = [{"kind": "quant", "method": "int8_all", "layer": "*", "amount": None, "val/acc": full,
             "drop": 100 * (base - full)}]
    for name in layers:
        try:
            only = accuracy(int8(model, example_shape, calibration, only=name, api=api), loader)
            but = accuracy(int8(model, example_shape, calibration, keep_float=[name], api=api), loader)
        except Exception as exc:
            log.warning("sensitivity (int8): skipping %s (%s)", name, brief(exc))
            continue
        rows += [{"kind": "quant", "method": "int8_only", "layer": name, "amount": None, "val/acc": only,
                  "drop": 100 * (base - only)},
                 {"kind": "quant", "method": "int8_all_but", "layer": name, "amount": None, "val/acc": but,
                  "drop": 100 * (base - but)}]
    return rows


def quant_layers(model: nn.Module, layers) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n in layers]


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
                ax.plot(*zip(*pts), marker="o", markersize=3, label=layer, color=f"C{i % 10}",
                        linestyle="-" if i < 10 else "--")
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


class Sensitivity(L.Callback):
    """The scans as a zero-epoch stage: the model is measured, never changed."""

    fine_tunes = False

    def __init__(self, grid=GRID, methods=SCAN_METHODS, quant: bool = True, include=("*",), exclude=(),
                 calibration_batches: int = 32, example_shape=None, workdir: str = "."):
        rules.apply({"grid": list(grid), "methods": list(methods), "quant": quant,
                     "calibration_batches": calibration_batches}, spec.RULES, "technique.")
        self.grid, self.methods, self.quant = sorted(float(a) for a in grid), list(methods), quant
        self.include, self.exclude = list(include), list(exclude)
        self.calibration_batches, self.example_shape, self.workdir = calibration_batches, example_shape, workdir
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
        means = {(r["method"], r["layer"]): statistics.mean(q["drop"] for q in self.rows if q["kind"] == "prune" and
                                                            (q["method"], q["layer"]) == (r["method"], r["layer"]))
                 for r in self.rows if r["kind"] == "prune"}
        for method in self.methods:
            mine = {layer: d for (m, layer), d in means.items() if m == method}
            if mine:
                worst = max(mine, key=mine.get)
                log.info("sensitivity (%s): most sensitive %s (mean drop %.2f pts over the grid), least %s (%.2f)",
                         method, worst, mine[worst], min(mine, key=mine.get), min(mine.values()))

    def summary(self) -> dict:
        return {"grid": self.grid, "methods": self.methods, "rows": self.rows,
                "files": [Path(f).name for f in self.files]}
