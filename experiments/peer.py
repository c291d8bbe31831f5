"""make bench --only peer (issue 57): a search's shipped file against the two files a user could ship
without compressor, timed side by side in this process on one thread:
- NNCF + OpenVINO int8 (post-training, static) of the same baseline, compiled for a static shape: the
  search's own int8 trial's OpenVINO file;
- OpenVINO's default compile of the baseline's IR: no precision hint, so bf16 on CPUs with AMX (the
  column says what it really computed in).
Ratios are taken within each interleaved round (the peer's time over the shipped file's), and the
median over rounds is kept: a load spike hits all three alike.

    python -m experiments.peer SEARCH_DIR [SEARCH_DIR ...] [--rounds 7] [--recipe R --runtime T]

`--recipe` and `--runtime` time that frontier file instead of the shipped one (frontier.csv's
`recipe` and `runtime`, its int8 file where there is one): the file a search would ship were it
certified, labelled "not shipped".

make bench --only peer reads the search part's folders (make bench --only search runs them)."""

import argparse
import csv
import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf

from compressor import measure
from compressor.runtimes.deploy import example, load
from compressor.runtimes.openvino import OpenVinoModel
from compressor.search.records import candidates


def trial(search_dir: Path, kinds: list[str]) -> Path:
    """The trial folder whose pipeline is exactly `kinds` (the baseline: [])."""
    for folder in sorted((search_dir / "trials").iterdir()):
        technique = OmegaConf.load(folder / "config.yaml").technique
        stages = [technique[s].kind for s in technique.order] if "order" in technique else [technique.get("kind")]
        if [k for k in stages if k != "baseline"] == kinds and (folder / "results.json").is_file():
            return folder
    raise FileNotFoundError(f"{search_dir}: no trial of {kinds or 'the baseline'} in trials/")


def frontier_file(search_dir: Path, recipe: str, runtime: str) -> dict:
    """frontier.csv's row of `recipe` on `runtime` (its int8 file first), as a candidate to load."""
    with open(search_dir / "frontier.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["recipe"] == recipe and r["runtime"] == runtime]
    if not rows:
        raise SystemExit(f"{search_dir}/frontier.csv: no file of recipe {recipe!r} on {runtime}")
    row = sorted(rows, key=lambda r: r["precision"] != "int8")[0]
    return {**row, "static_shape": row["static_shape"] == "True", "recipe": f"{recipe}; not shipped"}


def peers(search_dir: Path, rounds: int = 7, recipe: str | None = None, runtime: str | None = None) -> dict:
    """The shipped file's speed-up over each peer at b1 and b64 (medians of per-round ratios); with
    `recipe` and `runtime`, that frontier file's instead."""
    search_dir = Path(search_dir)
    found = json.loads((search_dir / "search.json").read_text())
    chosen = frontier_file(search_dir, recipe, runtime) if recipe else found.get("chosen")
    row = {"search": search_dir.name, "objective": found["objective"]}
    if not chosen:
        return {**row, "shipped": "nothing certified"}
    quant, baseline = trial(search_dir, ["quant"]), trial(search_dir, [])
    int8 = json.loads((quant / "results.json").read_text())
    nncf = next(
        c for c in candidates(int8, "openvino", halves=False) if c["precision"] == "int8" and c.get("static_shape")
    )
    nncf["path"] = str(quant / nncf["file"])
    default = OpenVinoModel(baseline / "model.xml", threads=1, static=True, own_precision=True)
    models = {"shipped": load(chosen), "nncf": load(nncf), "openvino": default}
    x = example(baseline)
    row |= {
        "shipped": f"{chosen['file']} on {chosen['runtime']} ({chosen['recipe']})",
        "openvino computes in": default.computes_in(),
    }
    for batch in (1, 64):  # each file compiled and run once at this shape before any round is timed
        for model in models.values():
            model(x.expand(batch, *x.shape[1:]).contiguous())
        seen = measure.rounds(models, x, batch, threads=1, count=rounds)
        for peer in ("nncf", "openvino"):
            ratios = [p / s for p, s in zip(seen[peer], seen["shipped"], strict=True)]
            row[f"b{batch} x {peer}"] = statistics.median(ratios)
            row[f"b{batch} x {peer} range"] = (min(ratios), max(ratios))
    return row


def line(r: dict) -> str:
    if "b1 x nncf" not in r:
        return f"| {r['search']} | {r['objective']} | {r['shipped']} | – | – | – | – | – |"
    cells = [
        f"{r[f'b{b} x {p}']:.2f}× ({r[f'b{b} x {p} range'][0]:.2f}-{r[f'b{b} x {p} range'][1]:.2f})"
        for b in (1, 64)
        for p in ("nncf", "openvino")
    ]
    return f"| {r['search']} | {r['objective']} | {r['shipped']} | {' | '.join(cells)} | {r['openvino computes in']} |"


HEADER = (
    "| search | objective | shipped | b1 × NNCF int8 static | b1 × OpenVINO default | b64 × NNCF int8 static "
    "| b64 × OpenVINO default | OpenVINO default computes in |\n|---|---|---|---|---|---|---|---|"
)


def table(rows: list[dict]) -> str:
    return "\n".join([HEADER, *map(line, rows)]) + "\n"


def of_bench(bench, objectives=("latency_b1", "latency_b64")) -> str:
    """The peer table of the search part's folders (one per seed and objective); a missing one is named."""
    rows, missing = [], []
    for seed in bench.seeds:
        for objective in objectives:
            folder = bench.out / bench.folder([], bench.search_folder(objective, seed))
            if (folder / "search.json").is_file():
                rows.append(peers(folder))
            else:
                missing.append(str(folder))
    note = f"\nNot run yet (make bench --only search): {', '.join(missing)}\n" if missing else ""
    return table(rows) + note


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m experiments.peer")
    parser.add_argument("searches", nargs="+", type=Path, help="search=default run folders (with search.json)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per batch size")
    parser.add_argument("--recipe", help="time this frontier recipe's file instead of the shipped one")
    parser.add_argument("--runtime", default="executorch", help="the runtime of --recipe's file")
    args = parser.parse_args(argv)
    for folder in args.searches:
        if not (folder / "search.json").is_file():
            parser.error(f"{folder}: no search.json (a search=default run folder)")
    print(table([peers(folder, args.rounds, args.recipe, args.runtime) for folder in args.searches]), end="")


if __name__ == "__main__":
    main()
