"""technique=kd's part of the report (compressor/report/build.py calls it through Kd.summarize)."""

import statistics
from collections import defaultdict


def note(runs: list[dict]) -> str:
    """What distillation added: each KD student against the same student trained alone (a kd run
    whose only loss term is ce) on the same dataset, seeds paired; or why the folder cannot say."""
    kd = [r for r in runs if r.get("stages")]
    if not kd:
        return ""

    def key(r):
        return r["run"]["dataset"], r["run"]["model"], r["run"].get("seed")

    def is_alone(r):
        return set(r["stages"][0].get("weights", {})) == {"ce"}

    alone = {key(r): r for r in kd if is_alone(r)}
    lines = []
    by_label = defaultdict(list)
    for r in (r for r in kd if not is_alone(r)):
        twin = alone.get(key(r))
        by_label[(r["run"]["dataset"], r["run"]["model"], r["run"]["label"])].append(
            100 * (r["test/acc"] - twin["test/acc"]) if twin else None
        )
    for (dataset, model, label), deltas in sorted(by_label.items()):
        paired = [d for d in deltas if d is not None]
        if not paired:
            lines.append(
                f"- {dataset}, {model}, {label}: no student-alone run with the same seed in this folder "
                "(add technique=kd technique.loss=ce), so this table cannot say what distillation added."
            )
            continue
        mean = statistics.mean(paired)
        if len(paired) > 1:
            std = statistics.stdev(paired)
            verdict = (
                "no clear gain: within the seeds' spread" if abs(mean) <= std else "better" if mean > 0 else "worse"
            ) + f" (± {std:.2f} over {len(paired)} seeds)"
        else:
            verdict = ("better" if mean > 0 else "worse" if mean < 0 else "no gain") + " (one seed: noise not measured)"
        lines.append(
            f"- {dataset}, {model}, {label}: {mean:+.2f} pts test accuracy against the same student "
            f"trained alone: **{verdict}**."
        )
    return "\n## Distillation against the student trained alone\n\n" + "\n".join(lines) + "\n" if lines else ""
