"""make bench --only deploy: every runtime's file of one int8 run, then our best compressed models,
timed side by side against NNCF + OpenVINO int8."""

from pathlib import Path

from compressor import measure
from compressor.runtimes.deploy import example

# -- deploy runtimes: every runtime's file of one int8 run, then our best compressed model --------
# channel pruning before int8, (amount, fine-tune epochs): the recovery default, and a harder cut
# given more epochs (SimpleCNN at 0.6: -1.9 pts after 4 epochs, -0.9 after 8; 0.7 lost 6.7 after 8)
AMOUNTS = ((0.5, 4), (0.6, 8))
# and distillation into the seeds' student (experiments/README.md: at 12 epochs it reaches its teacher)
KD_STUDENT, KD_EPOCHS = {"simple_cnn": "small_cnn"}, 12


def deployment(bench, models) -> list[dict]:
    """Per model: static int8 with export=all times torch fp32, our torch int8, ONNX Runtime int8,
    OpenVINO fp32 and NNCF + OpenVINO int8 (its defaults, our calibration batches) side by side in
    one call. Then channel pruning (AMOUNTS), or KD into the seeds' student (KD_STUDENT), + static
    int8 (a pipeline, export=all), each on its fastest file per batch size, re-timed beside the
    NNCF + OpenVINO int8 file of the unpruned model."""
    from compressor.runtimes.deploy import load

    rows = []
    for model in models:
        r = bench.job(
            [*bench.data_args(model), f"model={model}", "technique=quant", "export=all"], f"deploy_int8_{model}"
        )
        e = r["export"]
        own = r["deploy"]["candidates"][0]
        paths = [
            ("torch fp32", e["torch"]["fp32"], r["baseline"]["test/acc"]),
            ("compressor torch int8 (FX)", own, r["test/acc"]),
            ("compressor ONNX Runtime int8", e["onnxruntime"]["int8"], e["onnxruntime"]["int8"]["test/acc"]),
            ("OpenVINO fp32", e["openvino"]["fp32"], e["openvino"]["fp32"]["test/acc"]),
            ("NNCF PTQ + OpenVINO int8", e["openvino"]["int8"], e["openvino"]["int8"]["test/acc"]),
        ]
        for name, m, acc in paths:
            rows.append(
                {
                    "model": model,
                    "dataset": bench.dataset,
                    "path": name,
                    "test/acc": acc,
                    "b1 ms": m["latency/b1_ms"],
                    "b64 ms/img": m["latency/b64_ms"],
                    "× vs NNCF+OpenVINO int8": None,
                    "Δ test vs baseline (pts)": 100 * (acc - r["baseline"]["test/acc"]),
                }
            )
        recipes = [
            (
                f"channel {amount} ({epochs} epochs) + int8",
                f"deploy_channel{amount}_int8_{model}",
                [
                    "technique.order=[prune,quant]",
                    "technique.prune.method=channel",
                    f"technique.prune.amount={amount}",
                    f"technique.prune.epochs={epochs}",
                    f"model={model}",
                ],
            )
            for amount, epochs in AMOUNTS
        ]
        if model in KD_STUDENT:  # distillation into the seeds' student, then int8
            recipes.append(
                (
                    f"KD into {KD_STUDENT[model]} ({KD_EPOCHS} epochs) + int8",
                    f"deploy_kd_int8_{model}",
                    ["technique.order=[kd,quant]", f"technique.kd.epochs={KD_EPOCHS}", f"model={KD_STUDENT[model]}"],
                )
            )
        for what, name, overrides in recipes:
            p = bench.job(
                [*bench.data_args(model), f"teacher={model}", "technique=pipeline", *overrides, "export=all"], name
            )
            run = Path(p["run"]["run_dir"])
            best = {b: p["deploy"][b] for b in ("b1", "b64")}
            timed = {
                "nncf": load({"runtime": "openvino", "path": e["openvino"]["int8"]["path"]}),
                **{b: load({**best[b], "path": str(run / best[b]["file"])}) for b in best},
            }
            speeds = measure.latencies(timed, example(run), threads=1, reps=20, rounds=3)  # side by side
            for b in ("b1", "b64"):  # the accuracy of the file shipped, not of the run's torch model
                acc = best[b]["test/acc"]
                rows.append(
                    {
                        "model": model,
                        "dataset": bench.dataset,
                        "path": f"compressor {what}, fastest at {b}: {best[b]['runtime']} {best[b]['file']}",
                        "test/acc": acc,
                        "b1 ms": speeds[b]["latency/b1_ms"],
                        "b64 ms/img": speeds[b]["latency/b64_ms"],
                        "× vs NNCF+OpenVINO int8": f"{speeds['nncf'][f'latency/{b}_ms'] / speeds[b][f'latency/{b}_ms']:.2f} at {b}",
                        "Δ test vs baseline (pts)": 100 * (acc - p["baseline"]["test/acc"]),
                    }
                )
    return rows
