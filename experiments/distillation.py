"""make bench --only kd: make run's distillation job against the same student trained alone."""

import statistics

from compressor.report.build import derived
from experiments.common import mean_std


def distillation(bench) -> list[dict]:
    """`make run`'s KD job (SimpleCNN -> SmallCNN, default loss) against the same student
    trained alone (technique.loss=ce), over seeds: mean ± std of test accuracy and agreement."""
    rows = []
    for name, extra in (("student alone (loss=ce)", ["technique.loss=ce"]), ("distilled (defaults)", [])):
        runs = [
            bench.job(
                [f"dataset={bench.dataset}", "technique=kd", f"seed={seed}", *extra],
                f"kd_{extra[0].split('=')[1] if extra else 'default'}_s{seed}",
            )
            for seed in bench.seeds
        ]
        rows.append(
            {
                "run": name,
                "seeds": len(runs),
                "test/acc": mean_std([r["test/acc"] for r in runs]),
                "agreement with teacher": mean_std([r["kd"]["test/agreement"] for r in runs]),
                "teacher test/acc": f"{statistics.mean(r['kd']['teacher/test_acc'] for r in runs):.4f}",
                "size ×": statistics.mean(derived(r)["ratio"] for r in runs),
                "b64 speed-up ×": statistics.mean(derived(r)["speedup_b64"] for r in runs),
            }
        )
    return rows
