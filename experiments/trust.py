"""Issue 55's measurements, from a finished search's folder (`search=default`):

- `resampled`: does the budget hold on images no decision read? The search's files and its baseline
  are run on every validation and test image, and those images are dealt again at random, `draws`
  times, into a selection split, a certification split and fresh images, sized as the search's own.
  On each deal, two rules pick a file: today's before issue 55 (the largest gain whose drop on all
  the validation images, selection and certification together, is within max_drop) and the certified
  rule (compressor/certify.py: the frontier on the selection split, certified in order on the
  certification split). The rate at which each pick's drop on the fresh images exceeds max_drop is
  what the rule promises to keep under 1 - confidence.
- `ranking`: does the latency table rank the files as timing them side by side does? Per runtime and
  batch size, each file's table figure (measured into a fresh table) against its speed-up when all of
  that runtime's files and the baseline are timed together in interleaved rounds; Spearman's rho.

    python -m experiments.trust outputs/<search run> --draws 1000 [--ranking]

Gains are the search's own figures (the trials', or the table's where it had one). Results go to the
terminal as Markdown; experiments/README.md keeps them."""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from compressor import certify, measure
from compressor.config import CONF
from compressor.data import user
from compressor.report.table import markdown
from compressor.runtimes.deploy import example, load
from compressor.search import latency, space
from compressor.search.decide import pareto
from compressor.search.frontier import GAIN


def finals(folder: Path) -> tuple[list[dict], dict]:
    """The files the search chose among (every file of its full-recipe trials) and its search.json."""
    result = json.loads((folder / "search.json").read_text())
    search = OmegaConf.merge(  # its own config; a search from before search.techniques: the default's
        OmegaConf.load(CONF / "search" / "default.yaml"), OmegaConf.load(folder / "config.yaml").search
    )
    rows, seen = [], set()
    for line in (folder / "trials.jsonl").read_text().splitlines():
        trial = json.loads(line)
        full = trial["rung"] == "rung2" or (trial["rung"] == "rung1" and not space.fine_tunes(trial["point"], search))
        for c in trial.get("candidates", []) if full else ():
            key = (c["path"], c.get("static_shape", False))
            if key not in seen:
                seen.add(key)
                rows.append({**c, "recipe": trial["label"]})
    return rows, result


def answers(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(the baseline's answers, each file's: [files, images]) on the validation images then the test
    images, and how many are validation images. Validation answers come from the trials'
    correct.json; test answers are computed here (trials score their exported files on validation)."""
    config = OmegaConf.load(Path(rows[0]["path"]).parent / "config.yaml")
    dm = user.build(config.dataset)
    dm.setup()
    test_loader = dm.test_dataloader()
    base_val = certify.read(Path(rows[0]["path"]).parent, rows[0]["label"])[0]
    base = torch.cat([base_val["val"], base_val["test"]])
    files = []
    for r in rows:
        val = certify.read(Path(r["path"]).parent, r["label"])[1]["val"]
        test = measure.correct(*measure.predict(load(r), test_loader))
        files.append(torch.cat([val, test]))
    return base, torch.stack(files), len(base_val["val"])


def resampled(rows, base, files, n_val: int, gain: str, max_drop: float, confidence: float, draws: int, seed=0) -> dict:
    """Over `draws` deals of the images: how often each rule's pick loses more than max_drop on the
    fresh images, and how often it ships nothing."""
    g = torch.Generator().manual_seed(seed)
    n_sel = n_val - n_val // 2
    over = {"validation point estimate": 0, "certified": 0}
    nothing = {"validation point estimate": 0, "certified": 0}
    drops = {"validation point estimate": [], "certified": []}
    for _ in range(draws):
        order = torch.randperm(len(base), generator=g)
        sel, cert, fresh = order[:n_sel], order[n_sel:n_val], order[n_val:]
        val = order[:n_val]

        def drop(idx):
            return 100 * (base[idx].float().mean() - files[:, idx].float().mean(1))

        picks = {}
        on_val = drop(val)
        within = [i for i in range(len(rows)) if on_val[i] <= max_drop]
        picks["validation point estimate"] = max(within, key=lambda i: (rows[i][gain], -on_val[i])) if within else None
        on_sel = drop(sel)
        scored = [
            {**rows[i], "i": i, "val/acc": -on_sel[i].item(), "val_drop": on_sel[i].item()} for i in range(len(rows))
        ]
        front = pareto(scored, gain)
        sequence = sorted((r for r in front if r["val_drop"] <= max_drop), key=lambda r: (r["val_drop"], -r["val/acc"]))
        passed, _ = certify.in_sequence(
            sequence, lambda r, level: certify.paired(base[cert], files[r["i"]][cert], level), max_drop, confidence
        )
        picks["certified"] = max(passed, key=lambda r: (r[gain], r["val/acc"]))["i"] if passed else None
        on_fresh = drop(fresh)
        for rule, i in picks.items():
            if i is None:
                nothing[rule] += 1
                continue
            drops[rule].append(on_fresh[i].item())
            over[rule] += on_fresh[i].item() > max_drop
    return {
        rule: {
            "over max_drop on fresh images": over[rule] / draws,
            "ships nothing": nothing[rule] / draws,
            "mean fresh drop of the pick": statistics.fmean(drops[rule]) if drops[rule] else None,
        }
        for rule in over
    }


def ranking(rows: list[dict], reference: dict, threads: int = 1) -> list[dict]:
    """Per runtime and batch: Spearman's rho between the table's figures (a fresh table) and one
    side-by-side timing of all that runtime's files with the baseline."""
    from scipy.stats import spearmanr

    out = []
    table = Path(tempfile.mkdtemp(prefix="latency-table-"))
    for gain, batch in latency.BATCH.items():
        for runtime in sorted({r["runtime"] for r in rows}):
            mine = [r for r in rows if r["runtime"] == runtime]
            if len(mine) < 3:
                continue
            figures = [latency.figure(r, reference, gain, threads, table)["speedup"] for r in mine]
            models = {i: load(r) for i, r in enumerate([reference, *mine])}
            ms = measure.rounds(models, example(Path(mine[0]["path"]).parent), batch, threads, count=5)
            side = [statistics.median(ms[0]) / statistics.median(ms[i + 1]) for i in range(len(mine))]
            rho = spearmanr(figures, side).statistic
            out.append({"batch": batch, "runtime": runtime, "files": len(mine), "Spearman rho": rho})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--ranking", action="store_true", help="also time the files (minutes)")
    args = parser.parse_args()
    rows, result = finals(args.folder)
    gain = GAIN[result["objective"]]
    base, files, n_val = answers(rows)
    rates = resampled(rows, base, files, n_val, gain, result["max_drop"], args.confidence, args.draws)
    print(
        f"{len(rows)} files, {n_val} validation + {len(base) - n_val} test images, {args.draws} deals, "
        f"max_drop {result['max_drop']:g}, confidence {args.confidence:g}"
    )
    print(markdown([{"rule": rule, **v} for rule, v in rates.items()]))
    if args.ranking:
        reference = {
            "runtime": "torch",
            "path": str(Path(rows[0]["path"]).parent.parent / "baseline_000_baseline" / "model.safetensors"),
            "static_shape": False,
        }
        print(markdown(ranking(rows, reference)))


if __name__ == "__main__":
    main()
