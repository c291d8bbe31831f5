"""Default fine-tune recipes chosen by measurement: `python -m experiments.recipes`.

Channel pruning at 0.5 with fine-tune epochs = the baseline's training epochs (4), on both
embedded datasets (SimpleCNN) and on digits (ResNet-18: an epoch on mnist5k takes ~3 min here),
over the fine-tune learning rate and recover (none | kd), then the importance criteria at the
best of those. Every figure is a job run through compressor.run, like make bench."""

import argparse
from pathlib import Path

from compressor.report.build import derived
from experiments.common import Bench, table

BENCH = Bench()
job, OUT = BENCH.job, BENCH.out

PAIRS = [("simple_cnn", "mnist5k"), ("simple_cnn", "digits"), ("resnet18", "digits")]


def row(model, dataset, r, **knobs) -> dict:
    d = derived(r)
    return {
        "model": model,
        "dataset": dataset,
        **knobs,
        "Δ test (pts)": d["delta"],
        "MACs ×": r["baseline"]["compress/macs"] / r["compress/macs"],
        "b1 speed-up ×": d["speedup_b1"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m experiments.recipes")
    parser.add_argument("--lrs", default="1e-4,1e-3,3e-3")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    rows = []
    for model, dataset in PAIRS:
        base = [
            f"model={model}",
            f"dataset={dataset}",
            "technique=prune",
            "technique.method=channel",
            "technique.amount=0.5",
            f"technique.epochs={args.epochs}",
        ]
        for lr in args.lrs.split(","):
            for rec in ("none", "kd"):
                r = job(base + [f"technique.lr={lr}", f"technique.recover={rec}"], f"recipe_{model}_{lr}_{rec}")
                rows.append(row(model, dataset, r, lr=lr, recover=rec, importance="l1"))
                print(rows[-1], flush=True)
        best = max((r for r in rows if (r["model"], r["dataset"]) == (model, dataset)), key=lambda r: r["Δ test (pts)"])
        for importance in ("group_norm", "taylor"):
            r = job(
                base
                + [
                    f"technique.lr={best['lr']}",
                    f"technique.recover={best['recover']}",
                    f"technique.importance={importance}",
                ],
                f"recipe_{model}_{importance}",
            )
            rows.append(row(model, dataset, r, lr=best["lr"], recover=best["recover"], importance=importance))
            print(rows[-1], flush=True)
    unstructured = []
    for model, dataset in PAIRS:  # the same learning rates must not hurt unstructured pruning
        for lr in args.lrs.split(","):
            r = job(
                [
                    f"model={model}",
                    f"dataset={dataset}",
                    "technique=prune",
                    "technique.amount=0.9",
                    f"technique.epochs={args.epochs}",
                    f"technique.lr={lr}",
                ],
                f"recipe_l1_{model}_{lr}",
            )
            unstructured.append(row(model, dataset, r, lr=lr, recover="none", importance="l1 unstructured 0.9"))
            print(unstructured[-1], flush=True)
    text = (
        "## Channel pruning 0.5: fine-tune recipes\n\n"
        + table(rows)
        + "\n\n## Unstructured 0.9\n\n"
        + table(unstructured)
        + "\n"
    )
    Path(OUT).mkdir(parents=True, exist_ok=True)
    (OUT / "recipes.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
