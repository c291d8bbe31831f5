"""make bench: speed and size figures, measured side by side in one process, threads pinned.

Not a test: it prints ratios on this machine. Every compression figure comes from a job run
in-process (compressor.run), which measures the baseline and the compressed model one after
the other in the same process with the same code (compressor.measure)."""
import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

import compressor
from compressor import measure
from compressor import budget
from compressor.config import compose
from compressor.measure import pinned_threads
from compressor.report.build import derived

OUT = Path("outputs/bench")
# --dataset: one data set for every model and part. Fashion-MNIST is the benchmark's own (issue 25): on
# digits and mnist5k one validation image is 0.2-0.56 points, wider than the 1-point budgets compared here
BENCH_DATA = "fashion_mnist"
DATASET = BENCH_DATA
REUSE = False  # --reuse: a job whose exact config already has results.json (any run folder) is read, not rerun
# --train: the recipe of every baseline and teacher. converged (issue 41): a model trained to its plateau, as users
# ship; default is the 4-epoch recipe every figure before 2026-12-06 compressed (its folders keep their names)
BENCH_TRAIN = "converged"
TRAIN = BENCH_TRAIN


def folder(overrides, name) -> str:
    """A job's run folder under OUT, named after its data set too: runs on two data sets do not overwrite
    each other (experiments/kd.py and recipes.py name theirs)."""
    data = next((o.split("=", 1)[1] for o in overrides if o.startswith("dataset=")), DATASET)
    return f"{data}_{name}" if TRAIN == "default" else f"{data}_{TRAIN}_{name}"


def job(overrides, name) -> dict:
    """One job in-process; no ONNX/OpenVINO files unless the overrides ask (deployment() does)."""
    exports = [] if any(o.startswith("export=") for o in overrides) else ["export=none"]
    cfg = compose(["trainer.enable_progress_bar=false", "logger=none", f"rerun={not REUSE}", f"train={TRAIN}", *exports,
                   *overrides], OUT,
                  folder(overrides, name))
    return compressor.run(cfg)


# -- 1. training throughput: our Lightning loop against a plain PyTorch loop --------------------
def throughput(epochs: int = 1, rounds: int = 3, threads: int = 1) -> dict:
    from hydra.utils import instantiate

    from compressor.modules import Classifier

    cfg = compose(["trainer.enable_progress_bar=false"], OUT, "throughput")
    dm = instantiate(cfg.dataset)
    dm.setup()
    n = len(dm.train_set) * epochs

    def plain():
        L.seed_everything(0)
        model = instantiate(cfg.model.net)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        start = time.perf_counter()
        for _ in range(epochs):
            for x, y in dm.train_dataloader():
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return n / (time.perf_counter() - start)

    def ours():
        L.seed_everything(0)
        module = Classifier(instantiate(cfg.model.net), dm.num_classes, scheduler="none")
        with tempfile.TemporaryDirectory() as tmp:
            logger = instantiate(cfg.logger, save_dir=tmp, version="bench")
            trainer = instantiate(cfg.trainer, max_epochs=epochs, logger=logger, limit_val_batches=0,
                                  enable_checkpointing=False, default_root_dir=tmp)
            start = time.perf_counter()
            trainer.fit(module, train_dataloaders=dm.train_dataloader())
            return n / (time.perf_counter() - start)

    plain_rates, ours_rates = [], []
    with pinned_threads(threads):
        for _ in range(rounds):  # alternate, so machine load drifts hit both alike
            plain_rates.append(plain())
            ours_rates.append(ours())
    p, o = statistics.median(plain_rates), statistics.median(ours_rates)
    return {"plain images/s": p, "lightning images/s": o, "ratio": o / p, "threads": threads,
            "model": cfg.model.name, "dataset": cfg.dataset.name, "batch_size": cfg.dataset.batch_size}


def ratio_row(name, r) -> dict:
    """The report's ratios against the baseline (report.build.derived), plus the MACs ratio."""
    b, d = r["baseline"], derived(r)
    return {"run": name, "test/acc": r["test/acc"], "baseline acc": b["test/acc"], "Δ acc (pts)": d["delta"],
            "size ×": d["ratio"], "MACs ×": b["compress/macs"] / max(r["compress/macs"], 1),
            "b1 speed-up ×": d["speedup_b1"], "b64 speed-up ×": d["speedup_b64"]}


# models too slow for a whole data set on 2 cores train on a fixed part of it (dataset.train_size: the first
# N of the seeded training split; validation and test stay whole). ResNet-18 on Fashion-MNIST: 2.3 s per
# batch of 64 at 1 thread here, 33 min an epoch on 55,000 images, 3 min on 5,000
SUBSET = {("resnet18", "fashion_mnist"): 5000}
# the pruning rows per model, (method, amount, recipe): the shipped fine-tune (4 epochs at 1e-3) unless a recipe
# says otherwise. ResNet-18 is compared on channels only (the 50% channel row), on its 5,000-image subset,
# where 4 epochs are 312 steps (SimpleCNN's are 3,440) and channel 0.5 lost 5.43 +- 2.71 test points (0/3 seeds
# within 1); 12 epochs, still fewer steps than SimpleCNN's 4, gave +0.07 +- 0.31 (3/3). experiments/README.md
PRUNE = {"resnet18": (("channel", 0.5, ("technique.epochs=12",)),)}
PRUNE_DEFAULT = (("channel", 0.5, ()), ("l1_unstructured", 0.9, ()))
BENCH_SEEDS = (0, 1, 2)  # --seeds: every part that compares methods repeats its rows per seed
SEEDS = BENCH_SEEDS


def data_args(model: str = "simple_cnn") -> list[str]:
    n = SUBSET.get((model, DATASET))
    return [f"dataset={DATASET}", *([f"dataset.train_size={n}"] if n else [])]


def seeded(name: str, seed: int) -> str:
    """Seed 0 keeps the name it had before the bench took seeds (--reuse finds it)."""
    return name if seed == 0 else f"{name}_s{seed}"


def recipe_note(recipe) -> str:
    """How a row's recipe reads in its name: ' (epochs=8, lr=3e-3)' for technique.prune.epochs=8 etc.; '' for none."""
    return f" ({', '.join(o.split('.')[-1] for o in recipe)})" if recipe else ""


def pruning(models) -> list[dict]:
    """Channel 0.5 and unstructured 0.9 at default settings (fine-tune epochs and lr as shipped, unless
    PRUNE gives the model a recipe, which its row names), then unstructured 0.9 + static int8 on SimpleCNN
    (the sizes compound), each over SEEDS (each seed its own baseline): mean ± std of the change, means
    of the ratios."""
    rows = []
    for model in models:
        for method, amount, recipe in PRUNE.get(model, PRUNE_DEFAULT):
            # a recipe's runs get their own folders: the default runs' results stay readable beside them
            name = "_".join([f"prune_{method}_{model}", *(o.split(".")[-1].replace("=", "") for o in recipe)])
            runs = [job([*data_args(model), f"model={model}", "technique=prune", f"technique.method={method}",
                         f"technique.amount={amount}", *recipe, f"seed={s}"], seeded(name, s)) for s in SEEDS]
            rows.append(fit_row(f"{model} {method} {amount}{recipe_note(recipe)}", DATASET, runs))
    if "simple_cnn" not in models:
        return rows
    runs = [job([*data_args(), "technique=pipeline", "technique.order=[prune,quant]", "model=simple_cnn",
                 "technique.prune.amount=0.9", f"seed={s}"], seeded("pipeline_unstructured_int8_simple_cnn", s)) for s in SEEDS]
    rows.append(fit_row("simple_cnn unstructured 0.9 + static int8", DATASET, runs))
    return rows


SHARE = ("simple_cnn", "mnist_mlp")  # Deep Compression's two kinds of model: a LeNet-5-like CNN, LeNet-300-100-like MLP
# a model's own pruning recipe in the share rows, for both its sharing and its int8 row. The 784-128-10 MLP at
# 0.95 lost 1.46 +- 0.12 test points on Fashion-MNIST with the pipeline's 2 epochs at lr 1e-3, and 0.48 +- 0.27
# with 8 epochs at 3e-3 (3 seeds each; recipes tried: experiments/README.md, weight sharing)
SHARE_RECIPE = {"mnist_mlp": ("technique.prune.epochs=8", "technique.prune.lr=3e-3")}


def sharing(models=SHARE, amounts=(0.9, 0.95)) -> list[dict]:
    """Deep Compression's three steps against prune + int8, per model, amount and SEEDS:
    unstructured pruning, then weight sharing at 4 bits (technique=cluster) stored as codebook +
    coded indices. At 0.9 a coded zero mask costs about as much as the 4-bit codes."""
    rows = []
    for model in models:
        for amount in amounts:
            for what, order in (("cluster 4 bits + coding", "[prune,cluster]"), ("static int8", "[prune,quant]")):
                name = f"share_{order.strip('[]').replace(',', '_')}_{model}" + ("" if amount == 0.9 else f"_{amount:g}")
                recipe = SHARE_RECIPE.get(model, ())
                runs = [job([*data_args(model), "technique=pipeline", f"technique.order={order}", f"teacher={model}",
                             f"model={model}", f"technique.prune.amount={amount}", *recipe, f"seed={s}"], seeded(name, s))
                        for s in SEEDS]
                rows.append(fit_row(f"{model} unstructured {amount:g}{recipe_note(recipe)} + {what}", DATASET, runs))
    return rows


def fit_row(name, data, runs) -> dict:
    """One row over seeds: a single run's ratios as they are, several runs' as mean ± std or means."""
    r = runs[0]
    if len(runs) == 1:
        row = ratio_row(name, r)
    else:
        ds = [derived(x) for x in runs]
        row = {"run": name, "seeds": len(runs), "test/acc": mean_std([x["test/acc"] for x in runs]),
               "baseline acc": mean_std([x["baseline"]["test/acc"] for x in runs]),
               "Δ acc (pts)": mean_std([d["delta"] for d in ds]),
               "size ×": statistics.mean(d["ratio"] for d in ds),
               "MACs ×": statistics.mean(x["baseline"]["compress/macs"] / max(x["compress/macs"], 1) for x in runs),
               "b1 speed-up ×": statistics.mean(d["speedup_b1"] for d in ds),
               "b64 speed-up ×": statistics.mean(d["speedup_b64"] for d in ds)}
    images = r["run"].get("images", {})
    return {**row, "dataset": data + (f" (train {images['train']:,})" if images.get("train") else ""),
            "fine-tune epochs": sum(s.get("epochs", 0) for s in r["stages"]),
            "baseline epochs": len(r["baseline"].get("val/acc_per_epoch", [])) or None,
            "within 1 pt": f"{sum(derived(x)['delta'] >= -1.0 for x in runs)}/{len(runs)}"}


def mean_std(values) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"


def distillation(seeds=(0, 1, 2)) -> list[dict]:
    """`make run`'s KD job (SimpleCNN -> SmallCNN, default loss) against the same student
    trained alone (technique.loss=ce), over seeds: mean ± std of test accuracy and agreement."""
    rows = []
    for name, extra in (("student alone (loss=ce)", ["technique.loss=ce"]), ("distilled (defaults)", [])):
        runs = [job([f"dataset={DATASET}", "technique=kd", f"seed={seed}", *extra], f"kd_{extra[0].split('=')[1] if extra else 'default'}_s{seed}")
                for seed in seeds]
        rows.append({"run": name, "seeds": len(runs), "test/acc": mean_std([r["test/acc"] for r in runs]),
                     "agreement with teacher": mean_std([r["kd"]["test/agreement"] for r in runs]),
                     "teacher test/acc": f"{statistics.mean(r['kd']['teacher/test_acc'] for r in runs):.4f}",
                     "size ×": statistics.mean(derived(r)["ratio"] for r in runs),
                     "b64 speed-up ×": statistics.mean(derived(r)["speedup_b64"] for r in runs)})
    return rows


def quantization(models) -> list[dict]:
    rows = []
    variants = [("static", "torch"), ("qat", "torch"), ("dynamic", "torch"), ("fp16", "torch"), ("bf16", "torch"),
                ("static", "onnxruntime"), ("dynamic", "onnxruntime")]
    for model in models:
        for mode, backend in variants:
            r = job([*data_args(model), f"model={model}", "technique=quant", f"technique.mode={mode}", f"technique.backend={backend}",
                     "technique.epochs=1"] + (["export=onnx"] if (mode, backend) == ("static", "torch") else []),
                    f"quant_{mode}_{backend}_{model}")
            rows.append(ratio_row(f"{model} {mode} {backend}", r))
            if "export" in r:  # ONNX Runtime fp32 vs int8 on the same export, side by side
                fp32, int8 = r["export"]["onnxruntime"]["fp32"], r["export"]["onnxruntime"]["int8"]
                rows.append({"run": f"{model} onnxruntime int8 vs onnxruntime fp32", "test/acc": int8["test/acc"],
                             "baseline acc": fp32["test/acc"], "Δ acc (pts)": 100 * (int8["test/acc"] - fp32["test/acc"]),
                             "size ×": fp32["size_mb"] / int8["size_mb"], "MACs ×": 1.0,
                             "b1 speed-up ×": fp32["latency/b1_ms"] / int8["latency/b1_ms"],
                             "b64 speed-up ×": fp32["latency/b64_ms"] / int8["latency/b64_ms"]})
    return rows


# -- int8 on two APIs: torch.ao FX (deprecated) against torchao pt2e (issue 28) --------------------
APIS_MODELS = ("simple_cnn", "resnet18", "mobilenet_v2")
# pt2e becomes the default where it matches FX within these, on every model (issue 28)
SAME_ACC_PTS, SAME_SPEED = 0.2, 1.10


def int8_apis(models=APIS_MODELS) -> list[dict]:
    """Per model and seed: static int8 through technique.api=fx and =pt2e on the same cached
    baseline and calibration batches; the float baseline and both int8 files timed side by side."""
    from compressor.storage import artifact

    rows = []
    for model in models:
        for seed in SEEDS:
            runs = {api: job([*data_args(model), f"model={model}", "technique=quant", f"technique.api={api}",
                              f"seed={seed}"], seeded(f"int8_{api}_{model}", seed)) for api in ("fx", "pt2e")}
            base = runs["fx"]["baseline"]
            if base.get("at_chance") or not base.get("cache_entry"):
                raise SystemExit(f"int8api: the {model} baseline on {DATASET} is at chance (not cached): "
                                 f"nothing to quantize; pick another --dataset")
            files = {"fp32": artifact.load(Path(base["cache_entry"]) / artifact.FILENAME),
                     **{api: artifact.load(Path(r["run"]["run_dir"]) / artifact.FILENAME) for api, r in runs.items()}}
            speeds = measure.latencies(files, _example(Path(runs["fx"]["run"]["run_dir"])), threads=1, reps=20, rounds=3)
            for api, r in runs.items():
                s = speeds[api]
                rows.append({"model": model, "dataset": DATASET, "seed": seed, "api": api,
                             "test/acc": r["test/acc"], "Δ vs fp32 (pts)": 100 * (r["test/acc"] - base["test/acc"]),
                             "size MB": r["compress/size_mb"], "size ×": base["compress/size_mb"] / r["compress/size_mb"],
                             "b1 ms": s["latency/b1_ms"], "b64 ms/img": s["latency/b64_ms"],
                             "b1 speed-up ×": speeds["fp32"]["latency/b1_ms"] / s["latency/b1_ms"],
                             "b64 speed-up ×": speeds["fp32"]["latency/b64_ms"] / s["latency/b64_ms"]})
    return rows


def api_verdict(rows) -> list[dict]:
    """Per model, means over seeds: pt2e against FX on the issue's criteria."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {api: [r for r in rows if r["model"] == model and r["api"] == api] for api in ("fx", "pt2e")}
        m = {api: {k: statistics.mean(r[k] for r in v) for k in ("test/acc", "b1 ms", "b64 ms/img")} for api, v in by.items()}
        acc = 100 * (m["pt2e"]["test/acc"] - m["fx"]["test/acc"])
        b1, b64 = (m["pt2e"][k] / m["fx"][k] for k in ("b1 ms", "b64 ms/img"))
        out.append({"model": model, "seeds": len(by["fx"]), "pt2e − fx acc (pts)": acc,
                    "pt2e / fx b1 time": b1, "pt2e / fx b64 time": b64,
                    "pt2e matches fx": abs(acc) <= SAME_ACC_PTS and b1 <= SAME_SPEED and b64 <= SAME_SPEED})
    return out


# -- deploy runtimes: every runtime's file of one int8 run, then our best compressed model --------
# channel pruning before int8, (amount, fine-tune epochs): the recovery default, and a harder cut
# given more epochs (SimpleCNN at 0.6: -1.9 pts after 4 epochs, -0.9 after 8; 0.7 lost 6.7 after 8)
AMOUNTS = ((0.5, 4), (0.6, 8))
# and distillation into the seeds' student (experiments/README.md: at 12 epochs it reaches its teacher)
KD_STUDENT, KD_EPOCHS = {"simple_cnn": "small_cnn"}, 12


def deployment(models) -> list[dict]:
    """Per model: static int8 with export=all times torch fp32, our torch int8, ONNX Runtime int8,
    OpenVINO fp32 and NNCF + OpenVINO int8 (its defaults, our calibration batches) side by side in
    one call. Then channel pruning (AMOUNTS), or KD into the seeds' student (KD_STUDENT), + static
    int8 (a pipeline, export=all), each on its fastest file per batch size, re-timed beside the
    NNCF + OpenVINO int8 file of the unpruned model."""
    from compressor.storage import artifact
    from compressor.runtimes.onnx import OnnxModel
    from compressor.runtimes.openvino import OpenVinoModel

    loaders = {"torch": artifact.load, "onnxruntime": OnnxModel, "openvino": OpenVinoModel}  # a deploy file's runtime
    rows = []
    for model in models:
        r = job([*data_args(model), f"model={model}", "technique=quant", "export=all"], f"deploy_int8_{model}")
        e = r["export"]
        own = r["deploy"]["candidates"][0]
        paths = [("torch fp32", e["torch"]["fp32"], r["baseline"]["test/acc"]),
                 ("compressor torch int8 (FX)", own, r["test/acc"]),
                 ("compressor ONNX Runtime int8", e["onnxruntime"]["int8"], e["onnxruntime"]["int8"]["test/acc"]),
                 ("OpenVINO fp32", e["openvino"]["fp32"], e["openvino"]["fp32"]["test/acc"]),
                 ("NNCF PTQ + OpenVINO int8", e["openvino"]["int8"], e["openvino"]["int8"]["test/acc"])]
        for name, m, acc in paths:
            rows.append({"model": model, "dataset": DATASET, "path": name, "test/acc": acc,
                         "b1 ms": m["latency/b1_ms"], "b64 ms/img": m["latency/b64_ms"],
                         "× vs NNCF+OpenVINO int8": None, "Δ test vs baseline (pts)": 100 * (acc - r["baseline"]["test/acc"])})
        recipes = [(f"channel {amount} ({epochs} epochs) + int8", f"deploy_channel{amount}_int8_{model}",
                    ["technique.order=[prune,quant]", "technique.prune.method=channel",
                     f"technique.prune.amount={amount}", f"technique.prune.epochs={epochs}", f"model={model}"])
                   for amount, epochs in AMOUNTS]
        if model in KD_STUDENT:  # distillation into the seeds' student, then int8
            recipes.append((f"KD into {KD_STUDENT[model]} ({KD_EPOCHS} epochs) + int8", f"deploy_kd_int8_{model}",
                            ["technique.order=[kd,quant]", f"technique.kd.epochs={KD_EPOCHS}",
                             f"model={KD_STUDENT[model]}"]))
        for what, name, overrides in recipes:
            p = job([*data_args(model), f"teacher={model}", "technique=pipeline", *overrides, "export=all"], name)
            run = Path(p["run"]["run_dir"])
            best = {b: p["deploy"][b] for b in ("b1", "b64")}
            timed = {"nncf": OpenVinoModel(e["openvino"]["int8"]["path"]),
                     **{b: loaders[best[b]["runtime"]](run / best[b]["file"]) for b in best}}
            speeds = measure.latencies(timed, _example(run), threads=1, reps=20, rounds=3)  # side by side
            for b in ("b1", "b64"):  # the accuracy of the file shipped, not of the run's torch model
                acc = best[b]["test/acc"]
                rows.append({"model": model, "dataset": DATASET,
                             "path": f"compressor {what}, fastest at {b}: {best[b]['runtime']} {best[b]['file']}",
                             "test/acc": acc, "b1 ms": speeds[b]["latency/b1_ms"],
                             "b64 ms/img": speeds[b]["latency/b64_ms"],
                             "× vs NNCF+OpenVINO int8": f"{speeds['nncf'][f'latency/{b}_ms'] / speeds[b][f'latency/{b}_ms']:.2f} at {b}",
                             "Δ test vs baseline (pts)": 100 * (acc - p["baseline"]["test/acc"])})
    return rows


def _example(run: Path) -> torch.Tensor:
    from omegaconf import OmegaConf

    from compressor.data.base import example_input

    d = OmegaConf.load(run / "config.yaml").dataset
    return example_input(d.in_channels, d.image_size, 1)


# -- the search (issue 27): which file to ship, against what a user would pick instead ----------------
# the single techniques at their defaults, and the best combination found by hand (experiments/README.md,
# Deploy on Fashion-MNIST: KD into SmallCNN for 12 epochs, then int8, on ONNX Runtime)
SINGLES = {"int8 alone": ["technique=quant"],
           "channel 0.5 alone": ["technique=prune", "technique.method=channel", "technique.amount=0.5"],
           "distillation alone": ["technique=kd"]}
HAND = ["technique=pipeline", "technique.order=[kd,quant]", f"technique.kd.epochs={KD_EPOCHS}", "model=small_cnn"]
SEARCH_MINUTES = 50  # search.time_budget_min: no trial starts after it, so a search ends within about an hour


def untimed(overrides, name, logger: str = "none") -> dict:
    """A job that a later bench part, or the search's own trials, may find in the job index instead of
    training it again (rerun=false, whatever --reuse says)."""
    cfg = compose(["trainer.enable_progress_bar=false", f"logger={logger}", "rerun=false", f"train={TRAIN}", *overrides], OUT,
                  folder(overrides, name))
    return compressor.run(cfg)


def shipped(files: list[dict], gain: str, max_drop: float) -> dict:
    """The file a user of one run would ship: the largest gain within max_drop validation points, else
    its most accurate, marked over budget."""
    within = [c for c in files if c["val_drop"] <= max_drop]
    if within:
        return max(within, key=lambda c: (c[gain], c["val/acc"]))
    return {**max(files, key=lambda c: c["val/acc"]), "over_budget": True}


def runnable(c: dict):
    from compressor.runtimes.onnx import OnnxModel
    from compressor.runtimes.openvino import OpenVinoModel
    from compressor.storage import artifact

    if c["runtime"] == "openvino":
        return OpenVinoModel(c["path"], static=c.get("static_shape", False))
    return OnnxModel(c["path"]) if c["runtime"] == "onnxruntime" else artifact.load(c["path"])


def searching(seeds, max_drop: float = 1.0, objectives=("latency_b1", "latency_b64"), trials=None,
              parallel: int = 1) -> list[dict]:
    """Per seed (each its own baseline) and objective: `search=default` at budget.max_drop on SimpleCNN,
    then its chosen file timed side by side in this process with the best file of each single technique
    at its defaults (within the same budget on validation), the hand-found combination, and NNCF +
    OpenVINO int8 PTQ of the same baseline compiled for a static input shape. Ratios are the others'
    latency over the chosen file's, at the objective's batch size; accuracies are each file's own."""
    from compressor.search.frontier import GAIN, candidates

    rows = []
    data = data_args()  # SimpleCNN is the default model and teacher
    for seed in seeds:
        ours = {name: untimed([*data, *o, "export=all", f"seed={seed}"], f"search_single_{name.split()[0]}_s{seed}")
                for name, o in {**SINGLES, "hand-found: KD into SmallCNN (12 epochs) + int8": HAND}.items()}
        # NNCF's int8 of the baseline, the int8 run's OpenVINO export, compiled for a static shape
        nncf = next(c for c in candidates(ours["int8 alone"], "openvino") if c["precision"] == "int8" and c["static_shape"])
        for objective in objectives:
            gain, batch = GAIN[objective], objective.split("_")[1]
            start = time.monotonic()
            found = untimed([*data, "search=default", f"budget.max_drop={max_drop}", f"search.objective={objective}",
                             f"search.time_budget_min={SEARCH_MINUTES}", f"seed={seed}",
                             f"search.parallel={parallel}", *([f"search.max_trials={trials}"] if trials else [])],
                            f"search_{objective}_s{seed}", logger="tensorboard")
            minutes = (time.monotonic() - start) / 60
            chosen = found["chosen"] or {**found["frontier"][0], "over_budget": True}
            files = {"chosen": chosen, **{name: shipped(candidates(r, "any"), gain, max_drop) for name, r in ours.items()},
                     "NNCF + OpenVINO int8, static shape": nncf}
            example = _example(Path(ours["int8 alone"]["run"]["run_dir"]))
            speeds = measure.latencies({k: runnable(c) for k, c in files.items()}, example, threads=1, reps=20, rounds=3)
            ms = {k: v[f"latency/{batch}_ms"] for k, v in speeds.items()}
            for name, c in files.items():
                what = "search: " + c.get("recipe", "") if name == "chosen" else name
                rows.append({"objective": objective, "seed": seed, "file": f"{what} → {c['runtime']} {Path(c['path']).name}"
                             + (" (static shape)" if c.get("static_shape") else "") + (" [over budget]" if c.get("over_budget") else ""),
                             "Δ val (pts)": -c["val_drop"],
                             "Δ test (pts)": -c["test_drop"], f"{batch} ms/img": ms[name],
                             "chosen is × faster": ms[name] / ms["chosen"],
                             "budget held on test": (c["test_drop"] <= max_drop) if name == "chosen" else None,
                             "search minutes": minutes if name == "chosen" else None})
    return rows


def search_verdict(rows) -> list[dict]:
    """Per objective, over seeds: the chosen file against each other path (geometric mean of the ratios)."""
    out = []
    for objective in dict.fromkeys(r["objective"] for r in rows):
        mine = [r for r in rows if r["objective"] == objective]
        seeds = sorted({r["seed"] for r in mine})
        held = [r for r in mine if r["budget held on test"] is not None]
        row = {"objective": objective, "seeds": len(seeds),
               "budget held on test": f"{sum(r['budget held on test'] for r in held)}/{len(held)}",
               "search minutes (max)": max(r["search minutes"] for r in held)}
        for other in dict.fromkeys(r["file"].split(" → ")[0] for r in mine if not r["file"].startswith("search:")):
            ratios = [r["chosen is × faster"] for r in mine if r["file"].startswith(other + " → ")]
            row[f"× vs {other}"] = math.exp(statistics.mean(math.log(x) for x in ratios))
        out.append(row)
    return out


# -- accuracy budgets: the per-layer search against the best single amount ------------------------
# single amounts tried (each a prune run with the default fine-tune); closer where each method's edge lies
UNIFORM = {"l1_unstructured": (0.93, 0.94, 0.95, 0.97, 0.98, 0.985, 0.9875, 0.99),
           "channel": (0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)}
# the same fraction in every layer breaks far below a ranked amount's edge (2026-12-01: SimpleCNN lost 1.1
# test points at 0.9, ResNet-18 0.4 at 0.9), so unstructured scope=layer is tried at amounts of its own
LAYER = {"l1_unstructured": (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93)}


# Fashion-MNIST's fine-tunes take 1.5-5 min each here (digits': seconds), so fewer single amounts, around
# where seed 0 put each method's 1-point edge at the defaults (channel 0.5: -0.31, unstructured 0.9: +0.84)
ON_DATA = {"fashion_mnist": {"l1_unstructured": (0.95, 0.97, 0.98), "channel": (0.5, 0.55, 0.6, 0.65)}}
PROBE_EPOCHS = None  # --probe-epochs: budget.probe_epochs of the searches (None: the stage's epochs)


def amounts(method: str, scope: str, data: str = "mnist5k") -> tuple:
    if method in ON_DATA.get(data, {}) and scope != "layer":
        return ON_DATA[data][method]
    return LAYER.get(method, UNIFORM[method]) if scope == "layer" else UNIFORM[method]


SCOPES = {"global": "one amount, global ranking", "layer": "one amount in every layer",
          "lamp": "one amount, LAMP ranking"}
# the budgeted search's own first phase: LAMP for unstructured (3 seeds: its mean test drop is 0.2-1.2 points
# smaller than global ranking's at 0.98-0.99 on SimpleCNN, and it does not collapse ResNet-18 past 0.94;
# experiments/README.md), the stage default for channels
SEARCH_SCOPE = {"l1_unstructured": "lamp", "channel": "global"}


# tighter budgets searched too when budget.max_drop's runs lose more than max_drop on test (mean over the
# seeds): the search spends its budget to the edge of a small validation set, and the best single amount
# is chosen knowing test, so the budgeted side gets its one knob chosen the same way. One that allows as
# many wrong validation images as the budget before it is skipped: it would repeat that search probe for
# probe (digits' 180 images: 1 and 0.75 points both allow one image)
TIGHTER = (0.75, 0.5)


def images_allowed(max_drop: float, val_images: int) -> int:
    """How many more wrong validation images than the baseline a probe may have and still pass."""
    return math.floor(max_drop * val_images / 100 + budget.TOLERANCE * val_images)


def val_images(data: str) -> int:
    """The validation set's size for `dataset=...`."""
    from hydra.utils import instantiate

    dm = instantiate(compose([data], OUT, "val_images").dataset)
    dm.setup()
    return len(dm.val_set)


def mean(runs, key) -> float:
    return statistics.mean(r[key] for r in runs)


def deltas(runs, split: str = "test") -> list[float]:
    """Each run's accuracy change against its baseline, in points (negative = worse)."""
    return [100 * (r[f"{split}/acc"] - r["baseline"][f"{split}/acc"]) for r in runs]


def delta(runs, split: str = "test") -> float:
    return statistics.mean(deltas(runs, split))


def budgets(models, max_drop: float = 1.0, methods=tuple(UNIFORM), seeds=(0, 1, 2), scopes=tuple(SCOPES)) -> tuple[list, list]:
    """Per model and method, over `seeds` (each seed its own baseline; one point on these test
    sets is 10 images for mnist5k, 3.6 for digits, so one seed decides little), means over the
    seeds throughout. Budgeted runs (budget.max_drop on validation, then measured on test) against
    every single `amount` of UNIFORM (LAYER for the same fraction in every layer) in each scope:
    global ranking, the same fraction in every layer, LAMP ranking (unstructured). Two comparisons:
    - at <= max_drop on test, as the issue asks: the best single amount is the largest whose test
      drop is within max_drop, and the budgeted side is the first of max_drop, *TIGHTER whose test
      drop is within it (each side's one knob chosen knowing test);
    - on validation only, as a user without a test set would choose: the largest single amount
      within max_drop on validation against the budget.max_drop=max_drop search.
    Unstructured compares non-zero weights (and sparsity), channel compares MACs. Then full static
    int8 against budgeted static int8 at max_drop and at 0 points (seed 0)."""
    prune_rows, quant_rows = [], []
    quick = ["latency.reps=2", "latency.rounds=1"]  # the pruning rows compare MACs and weights, not time
    images = val_images(f"dataset={DATASET}")  # one data set for every model
    for model in models:
        for method in methods:
            size = "compress/macs" if method == "channel" else "compress/nonzero_params"
            fewer = f"fewer {'MACs' if method == 'channel' else 'non-zeros'} ×"
            probes = [f"budget.probe_epochs={PROBE_EPOCHS}"] if PROBE_EPOCHS else []
            base = [*data_args(model), f"model={model}", "technique=prune", f"technique.method={method}", *quick]
            searched = {}
            for limit in (max_drop, *TIGHTER):
                if searched and images_allowed(limit, images) == images_allowed(list(searched)[-1], images):
                    continue
                searched[limit] = [job(base + probes + [f"budget.max_drop={limit}", f"technique.scope={SEARCH_SCOPE[method]}",
                                               f"seed={s}"], f"budget{limit:g}_{method}_{model}_s{s}") for s in seeds]
                if delta(searched[limit]) >= -max_drop:
                    break
            limit, budgeted = list(searched.items())[-1]
            for scope, what in ((s, SCOPES[s]) for s in scopes if not (s == "lamp" and method == "channel")):
                single = {a: [job(base + [f"technique.amount={a}", f"technique.scope={scope}", f"seed={s}"],
                                  f"uniform_{method}_{scope}_{model}_{a}_s{s}") for s in seeds]
                          for a in amounts(method, scope, DATASET)}
                fits = [a for a, runs in single.items() if delta(runs) >= -max_drop]
                on_val = [a for a, runs in single.items() if delta(runs, "val") >= -max_drop]
                u, v = (single[max(fits)] if fits else None), (single[max(on_val)] if on_val else None)
                row = {"model": model, "dataset": DATASET, "method": method, "against": what,
                       "best single on test (Δ test)": f"{max(fits)} ({mean_std(deltas(u))})"
                       if u else "none fits",
                       "budgeted (Δ test / Δ val)": f"max_drop={limit:g} ({mean_std(deltas(budgeted))}"
                       f" / {delta(budgeted, 'val'):+.2f})",
                       "held on test": f"{sum(r['budget']['held/test'] for r in budgeted)}/{len(seeds)}",
                       f"single {size.split('/')[1]}": mean(u, size) if u else None,
                       f"budgeted {size.split('/')[1]}": mean(budgeted, size),
                       fewer: mean(u, size) / mean(budgeted, size) if u else None,
                       f"on val only: best single (Δ test) vs max_drop={max_drop:g} (Δ test), {fewer}":
                       f"{max(on_val)} ({delta(v):+.2f}) vs ({delta(searched[max_drop]):+.2f}): "
                       f"{mean(v, size) / mean(searched[max_drop], size):.2f}" if v else "none fits"}
                if method != "channel":
                    row["sparsity single / budgeted"] = f"{mean(u, 'compress/sparsity'):.4f} / " \
                        f"{mean(budgeted, 'compress/sparsity'):.4f}" if u else None
                prune_rows.append(row)
            for s, r in zip(seeds, budgeted):
                search = r["budget"]["stages"][0]
                print(f"{model} {method} seed {s}: from {search['from_amount']:g} + {search['per_layer_steps']} "
                      f"per-layer steps: {json.dumps(search['amounts'])}", flush=True)
        # full int8 against the budget, and against no drop at all on validation: the tightest budget a
        # user can set, where a real model's few sensitive layers show (the crafted case is in the tests)
        quant = [("full int8", job([*data_args(model), f"model={model}", "technique=quant"], f"quant_full_{model}"))]
        for limit in (max_drop, 0.0):
            quant.append((f"int8 within {limit:g} pt", job([*data_args(model), f"model={model}", "technique=quant",
                                                            f"budget.max_drop={limit}"], f"quant_budget{limit:g}_{model}")))
        for name, r in quant:
            d = derived(r)
            quant_rows.append({"model": model, "dataset": DATASET, "run": name,
                               "Δ val (pts)": delta([r], "val"), "Δ test (pts)": d["delta"],
                               "kept float": ", ".join(r["stages"][0]["keep_float"]) or "none",
                               "size ×": d["ratio"], "b1 speed-up ×": d["speedup_b1"], "b64 speed-up ×": d["speedup_b64"]})
    return prune_rows, quant_rows


def table(rows) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else "–" if v is None else str(v)
                                       for v in r.values()) + " |")
    return "\n".join(lines)


def arguments(argv=None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse make bench's options and set the module's settings from them."""
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--only", choices=["throughput", "prune", "share", "kd", "quant", "int8api", "deploy", "budget",
                                           "search"],
                        action="append")
    parser.add_argument("--models", default="simple_cnn,resnet18")
    parser.add_argument("--methods", default=",".join(UNIFORM), help="budget: pruning methods compared")
    parser.add_argument("--scopes", default=",".join(SCOPES), help="budget: single-amount scopes compared against")
    parser.add_argument("--dataset", default=BENCH_DATA, help="one data set for every model and part (default: "
                        "fashion_mnist, the benchmark data set; mnist5k or digits for a quick look)")
    parser.add_argument("--train", default=BENCH_TRAIN, choices=["converged", "default"], help="the baselines' and "
                        "teachers' recipe (train=...): converged, trained to a plateau (default), or the short default")
    parser.add_argument("--probe-epochs", type=int, help="budget: fine-tune epochs of each search probe "
                        "(budget.probe_epochs; default: the stage's epochs)")
    parser.add_argument("--seeds", default=",".join(map(str, BENCH_SEEDS)), help="seeds of each row that compares "
                        "methods (each its own baseline; mean ± std), e.g. 0 for a quick look")
    parser.add_argument("--search-trials", type=int, help="search: search.max_trials (default: the config's)")
    parser.add_argument("--search-parallel", type=int, default=1, help="search: search.parallel, trials at once")
    parser.add_argument("--reuse", action="store_true", help="read the results of jobs already run with the same "
                        "config instead of running them again (after a part failed, or to rebuild the tables)")
    args = parser.parse_args(argv)
    global REUSE, DATASET, SEEDS, PROBE_EPOCHS, TRAIN
    try:
        seeds = tuple(int(x) for x in args.seeds.split(","))
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r}: seeds are comma-separated integers, e.g. 0,1,2")
    REUSE, DATASET, SEEDS, TRAIN = args.reuse, args.dataset, seeds, args.train
    PROBE_EPOCHS = args.probe_epochs
    return parser, args


def main(argv=None):
    parser, args = arguments(argv)
    parts = args.only or ["throughput", "prune", "share", "kd", "quant", "int8api", "deploy", "budget", "search"]
    models = args.models.split(",")
    report = [f"Every baseline and teacher below: train={TRAIN}"
              + (" (trained to a plateau: conf/train/converged.yaml)" if TRAIN == "converged" else
                 " (4 epochs, not converged)") + "\n"]
    if "throughput" in parts:
        t = throughput()
        report.append(f"## Training throughput ({t['model']} on {t['dataset']}, batch {t['batch_size']}, "
                      f"{t['threads']} thread)\n\nplain PyTorch {t['plain images/s']:.0f} images/s, "
                      f"our Lightning loop {t['lightning images/s']:.0f} images/s: **{100 * t['ratio']:.1f}%** of plain\n")
        print(report[-1], flush=True)
    if "prune" in parts:
        report.append("## Pruning at default settings (fine-tune epochs and lr as shipped, but where a row names its "
                      "recipe; latency at 1 thread)\n\n"
                      + table(pruning(models)) + "\n")
        print(report[-1], flush=True)
    if "share" in parts:
        report.append("## Pruning + weight sharing + coding (Deep Compression) against pruning + int8, on disk\n\n"
                      + table(sharing(models if args.models != parser.get_default("models") else SHARE)) + "\n")
        print(report[-1], flush=True)
    if "kd" in parts:
        report.append(f"## Distillation at default settings: SimpleCNN -> SmallCNN on {DATASET}, {len(SEEDS)} seeds\n\n"
                      + table(distillation(SEEDS)) + "\n")
        print(report[-1], flush=True)
    if "quant" in parts:
        report.append(f"## Quantization on {DATASET} (latency at 1 thread; QAT 1 epoch)\n\n" + table(quantization(models)) + "\n")
        print(report[-1], flush=True)
    if "int8api" in parts:
        rows = int8_apis(models if args.models != parser.get_default("models") else APIS_MODELS)
        report.append("## Static int8: torch.ao FX against torchao pt2e, side by side (1 thread)\n\n" + table(rows)
                      + "\n\n" + table(api_verdict(rows)) + "\n")
        print(report[-1], flush=True)
    if "deploy" in parts:
        report.append(f"## Deploy runtimes, 1 thread: which file to ship ({', '.join(f'{m} on {DATASET}' for m in models)})\n\n"
                      + table(deployment(models)) + "\n")
        print(report[-1], flush=True)
    if "budget" in parts:
        prune_rows, quant_rows = budgets(models, methods=args.methods.split(","), scopes=args.scopes.split(","),
                                           seeds=SEEDS)
        tables = [table(rows) for rows in ([r for r in prune_rows if (r["method"] == "channel") == channel]
                                           for channel in (False, True)) if rows]
        report.append(f"## Accuracy budget 1 point: per-layer search against the best single amount ({len(SEEDS)} seeds)\n\n"
                      + "\n\n".join(tables + [table(quant_rows)]) + "\n")
        print(report[-1], flush=True)
    if "search" in parts:
        rows = searching(SEEDS, trials=args.search_trials, parallel=args.search_parallel)
        report.append(f"## Search (search=default, budget.max_drop=1) on simple_cnn, {DATASET}: the chosen file "
                      f"against the alternatives, timed side by side (1 thread)\n\n" + table(rows) + "\n\n"
                      + table(search_verdict(rows)) + "\n")
        print(report[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    # a partial bench (--only, --models, --methods, --scopes) gets its own file: two run side by side do not
    # overwrite each other (the l1 and channel budget runs of one model did)
    narrowed = [getattr(args, k) for k in ("models", "methods", "scopes", "dataset", "seeds", "probe_epochs", "search_trials",
                                           "search_parallel", "train")
                if getattr(args, k) != parser.get_default(k)]
    name = "_".join(["bench", *parts, *(n for v in narrowed for n in str(v).split(","))]) if args.only or narrowed else "bench"
    (OUT / f"{name}.md").write_text("\n".join(report))
    print(f"written to {OUT / name}.md")


if __name__ == "__main__":
    main()
