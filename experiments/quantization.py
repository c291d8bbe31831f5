"""make bench --only quant and --only int8api: every quantization mode and backend against its
baseline, and static int8 through torch.ao FX against torchao pt2e, side by side."""

import statistics
from pathlib import Path

from compressor import measure
from compressor.runtimes.deploy import example
from experiments.common import ratio_row, seeded


def quantization(bench, models) -> list[dict]:
    rows = []
    variants = [
        ("static", "torch"),
        ("qat", "torch"),
        ("dynamic", "torch"),
        ("fp16", "torch"),
        ("bf16", "torch"),
        ("static", "onnxruntime"),
        ("dynamic", "onnxruntime"),
    ]
    for model in models:
        for mode, backend in variants:
            r = bench.job(
                [
                    *bench.data_args(model),
                    f"model={model}",
                    "technique=quant",
                    f"technique.mode={mode}",
                    f"technique.backend={backend}",
                    "technique.epochs=1",
                ]
                + (["export=onnx"] if (mode, backend) == ("static", "torch") else []),
                f"quant_{mode}_{backend}_{model}",
            )
            rows.append(ratio_row(f"{model} {mode} {backend}", r))
            if "export" in r:  # ONNX Runtime fp32 vs int8 on the same export, side by side
                fp32, int8 = r["export"]["onnxruntime"]["fp32"], r["export"]["onnxruntime"]["int8"]
                rows.append(
                    {
                        "run": f"{model} onnxruntime int8 vs onnxruntime fp32",
                        "test/acc": int8["test/acc"],
                        "baseline acc": fp32["test/acc"],
                        "Δ acc (pts)": 100 * (int8["test/acc"] - fp32["test/acc"]),
                        "size ×": fp32["size_mb"] / int8["size_mb"],
                        "MACs ×": 1.0,
                        "b1 speed-up ×": fp32["latency/b1_ms"] / int8["latency/b1_ms"],
                        "b64 speed-up ×": fp32["latency/b64_ms"] / int8["latency/b64_ms"],
                    }
                )
    return rows


# -- int8 on two APIs: torch.ao FX (deprecated) against torchao pt2e (issue 28) --------------------
APIS_MODELS = ("simple_cnn", "resnet18", "mobilenet_v2")
# pt2e becomes the default where it matches FX within these, on every model (issue 28)
SAME_ACC_PTS, SAME_SPEED = 0.2, 1.10


def int8_apis(bench, models=APIS_MODELS) -> list[dict]:
    """Per model and seed: static int8 through technique.api=fx and =pt2e on the same cached
    baseline and calibration batches; the float baseline and both int8 files timed side by side."""
    from compressor.storage import artifact

    rows = []
    for model in models:
        for seed in bench.seeds:
            runs = {
                api: bench.job(
                    [
                        *bench.data_args(model),
                        f"model={model}",
                        "technique=quant",
                        f"technique.api={api}",
                        f"seed={seed}",
                    ],
                    seeded(f"int8_{api}_{model}", seed),
                )
                for api in ("fx", "pt2e")
            }
            base = runs["fx"]["baseline"]
            if base.get("at_chance") or not base.get("cache_entry"):
                raise SystemExit(
                    f"int8api: the {model} baseline on {bench.dataset} is at chance (not cached): "
                    f"nothing to quantize; pick another --dataset"
                )
            files = {
                "fp32": artifact.load(Path(base["cache_entry"]) / artifact.FILENAME),
                **{api: artifact.load(Path(r["run"]["run_dir"]) / artifact.FILENAME) for api, r in runs.items()},
            }
            speeds = measure.latencies(files, example(Path(runs["fx"]["run"]["run_dir"])), threads=1, reps=20, rounds=3)
            for api, r in runs.items():
                s = speeds[api]
                rows.append(
                    {
                        "model": model,
                        "dataset": bench.dataset,
                        "seed": seed,
                        "api": api,
                        "test/acc": r["test/acc"],
                        "Δ vs fp32 (pts)": 100 * (r["test/acc"] - base["test/acc"]),
                        "size MB": r["compress/size_mb"],
                        "size ×": base["compress/size_mb"] / r["compress/size_mb"],
                        "b1 ms": s["latency/b1_ms"],
                        "b64 ms/img": s["latency/b64_ms"],
                        "b1 speed-up ×": speeds["fp32"]["latency/b1_ms"] / s["latency/b1_ms"],
                        "b64 speed-up ×": speeds["fp32"]["latency/b64_ms"] / s["latency/b64_ms"],
                    }
                )
    return rows


def api_verdict(rows) -> list[dict]:
    """Per model, means over seeds: pt2e against FX on the issue's criteria."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {api: [r for r in rows if r["model"] == model and r["api"] == api] for api in ("fx", "pt2e")}
        m = {
            api: {k: statistics.mean(r[k] for r in v) for k in ("test/acc", "b1 ms", "b64 ms/img")}
            for api, v in by.items()
        }
        acc = 100 * (m["pt2e"]["test/acc"] - m["fx"]["test/acc"])
        b1, b64 = (m["pt2e"][k] / m["fx"][k] for k in ("b1 ms", "b64 ms/img"))
        out.append(
            {
                "model": model,
                "seeds": len(by["fx"]),
                "pt2e − fx acc (pts)": acc,
                "pt2e / fx b1 time": b1,
                "pt2e / fx b64 time": b64,
                "pt2e matches fx": abs(acc) <= SAME_ACC_PTS and b1 <= SAME_SPEED and b64 <= SAME_SPEED,
            }
        )
    return out
