"""make bench: speed and size figures, measured side by side in one process, threads pinned.

Not a test: it prints ratios on this machine. Every compression figure comes from a job run
in-process (compressor.run), which measures the baseline and the compressed model one after
the other in the same process with the same code (compressor.measure). Each part is a module of
experiments/ (throughput, pruning, distillation, quantization, deploy, budgets, search, peer); this one
parses the options into the settings every part runs under (experiments.common.Bench) and writes
the report."""

import argparse

from experiments import budgets, deploy, distillation, peer, pruning, quantization, search, throughput
from experiments.common import OUT, Bench, table

PARTS = ["throughput", "prune", "share", "kd", "quant", "int8api", "deploy", "budget", "search", "peer"]
DEFAULT = Bench()


def arguments(argv=None) -> tuple[argparse.ArgumentParser, argparse.Namespace, Bench]:
    """make bench's options, and the settings they give."""
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--only", choices=PARTS, action="append")
    parser.add_argument("--models", default="simple_cnn,resnet18")
    parser.add_argument("--methods", default=",".join(budgets.UNIFORM), help="budget: pruning methods compared")
    parser.add_argument(
        "--scopes", default=",".join(budgets.SCOPES), help="budget: single-amount scopes compared against"
    )
    parser.add_argument(
        "--dataset",
        default=DEFAULT.dataset,
        help="one data set for every model and part (default: "
        "fashion_mnist, the benchmark data set; mnist5k or digits for a quick look)",
    )
    parser.add_argument(
        "--train",
        default=DEFAULT.train,
        choices=["converged", "default"],
        help="the baselines' and "
        "teachers' recipe (train=...): converged, trained to a plateau (default), or the short default",
    )
    parser.add_argument(
        "--probe-epochs",
        type=int,
        help="budget: fine-tune epochs of each search probe (budget.probe_epochs; default: the stage's epochs)",
    )
    parser.add_argument(
        "--seeds",
        default=",".join(map(str, DEFAULT.seeds)),
        help="seeds of each row that compares methods (each its own baseline; mean ± std), e.g. 0 for a quick look",
    )
    parser.add_argument("--search-trials", type=int, help="search: search.max_trials (default: the config's)")
    parser.add_argument("--search-parallel", type=int, default=1, help="search: search.parallel, trials at once")
    parser.add_argument(
        "--search-minutes",
        type=float,
        default=search.SEARCH_MINUTES,
        help="search: search.time_budget_min,"
        " no trial starts after it (default: %(default)s; the converged figures used 600, no limit)",
    )
    parser.add_argument(
        "--search-args",
        nargs="+",
        default=[],
        metavar="OVERRIDE",
        help="search and peer: Hydra overrides of every search, e.g. the issue-57 headline space "
        "'search.students=[simple_cnn_half,simple_cnn_narrow]' 'search.channel=[0.5]' 'search.unstructured=[]' "
        "search.max_trials=12 (experiments/README.md); the folders are named after them",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read the results of jobs already run with the same "
        "config instead of running them again (after a part failed, or to rebuild the tables)",
    )
    args = parser.parse_args(argv)
    try:
        seeds = tuple(int(x) for x in args.seeds.split(","))
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r}: seeds are comma-separated integers, e.g. 0,1,2")
    return (
        parser,
        args,
        Bench(
            dataset=args.dataset,
            train=args.train,
            seeds=seeds,
            reuse=args.reuse,
            probe_epochs=args.probe_epochs,
            search_args=tuple(args.search_args),
        ),
    )


def main(argv=None):
    parser, args, bench = arguments(argv)
    parts = args.only or PARTS
    models = args.models.split(",")
    report = [
        f"Every baseline and teacher below: train={bench.train}"
        + (
            " (trained to a plateau: conf/train/converged.yaml)"
            if bench.train == "converged"
            else " (4 epochs, not converged)"
        )
        + "\n"
    ]
    if "throughput" in parts:
        t = throughput.throughput(bench)
        report.append(
            f"## Training throughput ({t['model']} on {t['dataset']}, batch {t['batch_size']}, "
            f"{t['threads']} thread)\n\nplain PyTorch {t['plain images/s']:.0f} images/s, "
            f"our Lightning loop {t['lightning images/s']:.0f} images/s: **{100 * t['ratio']:.1f}%** of plain\n"
        )
        print(report[-1], flush=True)
    if "prune" in parts:
        report.append(
            "## Pruning at default settings (fine-tune epochs and lr as shipped, but where a row names its "
            "recipe; latency at 1 thread)\n\n" + table(pruning.pruning(bench, models)) + "\n"
        )
        print(report[-1], flush=True)
    if "share" in parts:
        report.append(
            "## Pruning + weight sharing + coding (Deep Compression) against pruning + int8, on disk\n\n"
            + table(pruning.sharing(bench, models if args.models != parser.get_default("models") else pruning.SHARE))
            + "\n"
        )
        print(report[-1], flush=True)
    if "kd" in parts:
        report.append(
            f"## Distillation at default settings: SimpleCNN -> SmallCNN on {bench.dataset}, {len(bench.seeds)} seeds\n\n"
            + table(distillation.distillation(bench))
            + "\n"
        )
        print(report[-1], flush=True)
    if "quant" in parts:
        report.append(
            f"## Quantization on {bench.dataset} (latency at 1 thread; QAT 1 epoch)\n\n"
            + table(quantization.quantization(bench, models))
            + "\n"
        )
        print(report[-1], flush=True)
    if "int8api" in parts:
        rows = quantization.int8_apis(
            bench, models if args.models != parser.get_default("models") else quantization.APIS_MODELS
        )
        report.append(
            "## Static int8: torch.ao FX against torchao pt2e, side by side (1 thread)\n\n"
            + table(rows)
            + "\n\n"
            + table(quantization.api_verdict(rows))
            + "\n"
        )
        print(report[-1], flush=True)
    if "deploy" in parts:
        report.append(
            f"## Deploy runtimes, 1 thread: which file to ship ({', '.join(f'{m} on {bench.dataset}' for m in models)})\n\n"
            + table(deploy.deployment(bench, models))
            + "\n"
        )
        print(report[-1], flush=True)
    if "budget" in parts:
        prune_rows, quant_rows = budgets.budgets(
            bench, models, methods=args.methods.split(","), scopes=args.scopes.split(",")
        )
        tables = [
            table(rows)
            for rows in ([r for r in prune_rows if (r["method"] == "channel") == channel] for channel in (False, True))
            if rows
        ]
        report.append(
            f"## Accuracy budget 1 point: per-layer search against the best single amount ({len(bench.seeds)} seeds)\n\n"
            + "\n\n".join(tables + [table(quant_rows)])
            + "\n"
        )
        print(report[-1], flush=True)
    if "search" in parts:
        rows = search.searching(
            bench, trials=args.search_trials, parallel=args.search_parallel, time_budget=args.search_minutes
        )
        report.append(
            f"## Search (search=default, budget.max_drop=1) on simple_cnn, {bench.dataset}: the chosen file "
            f"against the alternatives, timed side by side (1 thread)\n\n"
            + table(rows)
            + "\n\n"
            + table(search.search_verdict(rows))
            + "\n"
        )
        print(report[-1], flush=True)
    if "peer" in parts:
        report.append(
            f"## The shipped file against its peers (issue 57), {bench.dataset}: NNCF + OpenVINO int8 static of the "
            "same baseline, and OpenVINO's default compile of it, timed side by side (1 thread)\n\n"
            + peer.of_bench(bench)
            + "\n"
        )
        print(report[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    # a partial bench (--only, --models, --methods, --scopes) gets its own file: two run side by side do not
    # overwrite each other (the l1 and channel budget runs of one model did)
    narrowed = [
        getattr(args, k)
        for k in (
            "models",
            "methods",
            "scopes",
            "dataset",
            "seeds",
            "probe_epochs",
            "search_trials",
            "search_parallel",
            "search_minutes",
            "train",
        )
        if getattr(args, k) != parser.get_default(k)
    ]
    name = (
        "_".join(["bench", *parts, *(n for v in narrowed for n in str(v).split(",")), *filter(None, [bench.space])])
        if args.only or narrowed or bench.space
        else "bench"
    )
    (OUT / f"{name}.md").write_text("\n".join(report))
    print(f"written to {OUT / name}.md")


if __name__ == "__main__":
    main()
