"""The search's two rungs (compressor/search/frontier.py runs them): the first samples points with
Optuna's NSGA-II on short recipes, the second gives the most promising their full recipe, except
those that cannot win. Every gain read here is the latency table's (compressor/search/latency.py)."""

import logging
import time

from compressor.search import space, ties

log = logging.getLogger("compressor")


def best(record: dict, gain: str, allowed: float) -> dict | None:
    """A trial's candidate with the largest gain within `allowed` points; else its most accurate."""
    within = [c for c in record["candidates"] if c["val_drop"] <= allowed]
    if within:
        return max(within, key=lambda c: (c[gain], c["val/acc"]))
    return max(record["candidates"], key=lambda c: c["val/acc"], default=None)


def first_rung(
    trials, dims: dict, s, gain: str, max_drop: float, deadline: float, epochs, seed: int, writer
) -> list[dict]:
    """`search.max_trials` new points sampled by NSGA-II (validation accuracy and gain), run
    `search.parallel` at a time with short recipes; a repeated point is told its values again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize", "maximize"],
        sampler=optuna.samplers.NSGAIISampler(population_size=max(2, min(s.max_trials, 8)), seed=seed),
    )
    distributions = {k: optuna.distributions.CategoricalDistribution(v) for k, v in dims.items()}
    for point in space.anchors(dims, s):  # asked first, before the sampler's own points
        study.enqueue_trial(point)
    first, seen, asked = [], {}, 0
    while len(first) < s.max_trials and time.monotonic() <= deadline and asked < 20 * s.max_trials:
        batch, waiting = {}, []  # the new points to run now, and the Optuna trials to tell after them
        while len(first) + len(batch) < s.max_trials and len(batch) < s.parallel and asked < 20 * s.max_trials:
            trial = study.ask(distributions)
            asked += 1
            point = dict(trial.params)
            key = tuple(sorted(point.items()))
            if key in batch:
                waiting.append((trial, key))
            elif key in seen:
                tell(study, trial, seen[key])
            elif not space.stages(point, s):  # the baseline: the reference, not a candidate
                seen[key] = None
                tell(study, trial, None)
            else:
                batch[key] = point
                waiting.append((trial, key))
        for key, record in zip(batch, trials.run_many(list(batch.values()), epochs, "rung1")):
            pick = best(record, gain, max_drop + s.margin)
            seen[key] = None if pick is None else (pick["val/acc"], pick[gain])
            first.append(record)
            if writer and pick:
                writer.log_metrics(
                    {"search/rung1_val_acc": pick["val/acc"], f"search/rung1_{gain}": pick[gain]}, step=len(first)
                )
        for trial, key in waiting:
            tell(study, trial, seen[key])
    return first


def second_rung(
    trials, first: list[dict], s, gain: str, max_drop: float, deadline: float, full: dict
) -> tuple[list[dict], list[str]]:
    """The `search.promote` first-rung trials with the largest gain within max_drop + margin, run
    with their full recipe (a trial with nothing to fine-tune was full already), and the labels of
    those left out because they cannot win (`outclassed`). One trial per fit (`space.fit_of`): the
    int8 and fp32 trials of one pruned student share a fit, and the slower one would take the slot
    of another structure (issue 57: seed 2's cut student went unpromoted behind two such twins)."""
    picks = [(best(r, gain, max_drop + s.margin), r) for r in first if r["candidates"]]
    eligible = [r for pick, r in sorted(picks, key=lambda p: -p[0][gain]) if pick["val_drop"] <= max_drop + s.margin]
    finals = [r for r in first if r["candidates"] and not space.fine_tunes(r["point"], s)]
    held = won(finals, gain, max_drop) if s.skip_outclassed else None
    tuned = [r for r in eligible if space.fine_tunes(r["point"], s)]
    outclassed = [r["label"] for r in tuned if held and not reaches(r, held, gain)]
    for label in outclassed:
        log.info(
            "search: %s not promoted: none of its files reaches %g of %s's speed-up within the budget, "
            "%.2fx (the latency table's figures)",
            label,
            ties.CLOSE,
            held["recipe"],
            held[gain],
        )
    promoted, fits = [], set()
    for r in tuned:  # by gain, so each fit is promoted by its best trial
        fit = space.fit_of(r["point"], s)
        if r["label"] not in outclassed and fit not in fits and len(promoted) < s.promote:
            fits.add(fit)
            promoted.append(r)
    for i in range(0, len(promoted), s.parallel):
        if time.monotonic() > deadline:
            for r in promoted[i:]:
                log.warning(
                    "search: search.time_budget_min reached; %s keeps its short recipe out of the frontier", r["label"]
                )
            break
        finals += trials.run_many([r["point"] for r in promoted[i : i + s.parallel]], full, "rung2")
    return finals, outclassed


def won(finals: list[dict], gain: str, max_drop: float) -> dict | None:
    """The file with the largest gain a finished (full-recipe) trial already holds within the budget,
    with its recipe. Training a first-rung trial longer changes its files' accuracy, not their
    architecture, so not their speed or size: a trial whose every file is under ties.CLOSE of it
    cannot be chosen, nor tie."""
    held = [{**c, "recipe": r["label"]} for r in finals for c in r["candidates"] if c["val_drop"] <= max_drop]
    return max(held, key=lambda c: c[gain], default=None)


def reaches(record: dict, held: dict, gain: str) -> bool:
    """Whether `record`'s fastest file reaches ties.CLOSE of `held`'s gain. Both are the latency
    table's figures (compressor/search/latency.py), measured once per machine under one protocol,
    not each trial's own timing, which moved with the load; size is exact."""
    fastest = max(record["candidates"], key=lambda c: c[gain])
    return fastest[gain] >= ties.CLOSE * held[gain]


def tell(study, trial, values) -> None:
    import optuna

    if values is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, list(values))
