"""What every part of make bench shares: the settings it runs under (one data set, the baselines'
recipe, the seeds), how a part runs a job, and the rows' arithmetic. A part is a module of its own
(experiments/<part>.py); bench.py parses the options and writes the report."""

import hashlib
import statistics
from dataclasses import dataclass
from pathlib import Path

import compressor
from compressor.config import compose
from compressor.report.build import derived
from compressor.report.table import markdown as table  # noqa: F401 - the parts write tables with it

OUT = Path("outputs/bench")
# models too slow for a whole data set on 2 cores train on a fixed part of it (dataset.train_size: the first
# N of the seeded training split; validation and test stay whole). ResNet-18 on Fashion-MNIST: 2.3 s per
# batch of 64 at 1 thread here, 33 min an epoch on 55,000 images, 3 min on 5,000
SUBSET = {("resnet18", "fashion_mnist"): 5000}


@dataclass
class Bench:
    """The settings of one bench run (make bench's options), passed to every part.
    dataset: one data set for every model and part. Fashion-MNIST is the benchmark's own (issue 25): on
      digits and mnist5k one validation image is 0.2-0.56 points, wider than the 1-point budgets compared.
    train: the recipe of every baseline and teacher. converged (issue 41): a model trained to its plateau,
      as users ship; default is the 4-epoch recipe every figure before 2026-12-06 compressed (its folders
      keep their names).
    seeds: every part that compares methods repeats its rows per seed (each seed its own baseline).
    reuse: a job whose exact config already has results.json (any run folder) is read, not rerun.
    probe_epochs: budget.probe_epochs of the budget part's searches (None: the stage's epochs).
    search_args: Hydra overrides of every search the search part runs, and so of what the peer part times
      (the issue-57 headline space names the students cut from the model); their folders carry a digest
      of them, so searches over two spaces do not overwrite each other."""

    dataset: str = "fashion_mnist"
    train: str = "converged"
    seeds: tuple = (0, 1, 2)
    reuse: bool = False
    probe_epochs: int | None = None
    search_args: tuple = ()
    out: Path = OUT

    @property
    def space(self) -> str:
        """A name for the searches' overrides: '' for none, else 'space' and a digest of them."""
        return f"space{hashlib.sha1(' '.join(self.search_args).encode()).hexdigest()[:8]}" if self.search_args else ""

    def search_folder(self, objective: str, seed: int) -> str:
        """The search part's job name for one objective and seed (the peer part reads the same)."""
        return "_".join(filter(None, (f"search_{objective}_s{seed}", self.space)))

    def folder(self, overrides, name) -> str:
        """A job's run folder under `out`, named after its data set too: runs on two data sets do not
        overwrite each other (experiments/kd.py and recipes.py name theirs)."""
        data = next((o.split("=", 1)[1] for o in overrides if o.startswith("dataset=")), self.dataset)
        return f"{data}_{name}" if self.train == "default" else f"{data}_{self.train}_{name}"

    def job(self, overrides, name) -> dict:
        """One job in-process; no ONNX/OpenVINO files unless the overrides ask (deploy does)."""
        exports = [] if any(o.startswith("export=") for o in overrides) else ["export=none"]
        cfg = compose(
            [
                "trainer.enable_progress_bar=false",
                "logger=none",
                f"rerun={not self.reuse}",
                f"train={self.train}",
                *exports,
                *overrides,
            ],
            self.out,
            self.folder(overrides, name),
        )
        return compressor.run(cfg)

    def untimed(self, overrides, name, logger: str = "none") -> dict:
        """A job that a later part, or the search's own trials, may find in the job index instead of
        training it again (rerun=false, whatever `reuse` says)."""
        cfg = compose(
            ["trainer.enable_progress_bar=false", f"logger={logger}", "rerun=false", f"train={self.train}", *overrides],
            self.out,
            self.folder(overrides, name),
        )
        return compressor.run(cfg)

    def data_args(self, model: str = "simple_cnn") -> list[str]:
        n = SUBSET.get((model, self.dataset))
        return [f"dataset={self.dataset}", *([f"dataset.train_size={n}"] if n else [])]


def ratio_row(name, r) -> dict:
    """The report's ratios against the baseline (report.build.derived), plus the MACs ratio."""
    b, d = r["baseline"], derived(r)
    return {
        "run": name,
        "test/acc": r["test/acc"],
        "baseline acc": b["test/acc"],
        "Δ acc (pts)": d["delta"],
        "size ×": d["ratio"],
        "MACs ×": b["compress/macs"] / max(r["compress/macs"], 1),
        "b1 speed-up ×": d["speedup_b1"],
        "b64 speed-up ×": d["speedup_b64"],
    }


def seeded(name: str, seed: int) -> str:
    """Seed 0 keeps the name it had before the bench took seeds (--reuse finds it)."""
    return name if seed == 0 else f"{name}_s{seed}"


def recipe_note(recipe) -> str:
    """How a row's recipe reads in its name: ' (epochs=8, lr=3e-3)' for technique.prune.epochs=8 etc.; '' for none."""
    return f" ({', '.join(o.split('.')[-1] for o in recipe)})" if recipe else ""


def fit_row(name, data, runs) -> dict:
    """One row over seeds: a single run's ratios as they are, several runs' as mean ± std or means."""
    r = runs[0]
    if len(runs) == 1:
        row = ratio_row(name, r)
    else:
        ds = [derived(x) for x in runs]
        row = {
            "run": name,
            "seeds": len(runs),
            "test/acc": mean_std([x["test/acc"] for x in runs]),
            "baseline acc": mean_std([x["baseline"]["test/acc"] for x in runs]),
            "Δ acc (pts)": mean_std([d["delta"] for d in ds]),
            "size ×": statistics.mean(d["ratio"] for d in ds),
            "MACs ×": statistics.mean(x["baseline"]["compress/macs"] / max(x["compress/macs"], 1) for x in runs),
            "b1 speed-up ×": statistics.mean(d["speedup_b1"] for d in ds),
            "b64 speed-up ×": statistics.mean(d["speedup_b64"] for d in ds),
        }
    images = r["run"].get("images", {})
    return {
        **row,
        "dataset": data + (f" (train {images['train']:,})" if images.get("train") else ""),
        "fine-tune epochs": sum(s.get("epochs", 0) for s in r["stages"]),
        "baseline epochs": len(r["baseline"].get("val/acc_per_epoch", [])) or None,
        "within 1 pt": f"{sum(derived(x)['delta'] >= -1.0 for x in runs)}/{len(runs)}",
    }


def mean_std(values) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


def mean(runs, key) -> float:
    return statistics.mean(r[key] for r in runs)


def deltas(runs, split: str = "test") -> list[float]:
    """Each run's accuracy change against its baseline, in points (negative = worse)."""
    return [100 * (r[f"{split}/acc"] - r["baseline"][f"{split}/acc"]) for r in runs]


def delta(runs, split: str = "test") -> float:
    return statistics.mean(deltas(runs, split))
