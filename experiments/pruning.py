"""make bench --only prune and --only share: pruning at default settings over seeds, and Deep
Compression (prune + weight sharing + coding) against prune + int8."""

from experiments.common import fit_row, recipe_note, seeded

# the pruning rows per model, (method, amount, recipe): the shipped fine-tune (4 epochs at 1e-3) unless a recipe
# says otherwise. ResNet-18 is compared on channels only (the 50% channel row), on its 5,000-image subset,
# where 4 epochs are 312 steps (SimpleCNN's are 3,440) and channel 0.5 lost 5.43 +- 2.71 test points (0/3 seeds
# within 1); 12 epochs, still fewer steps than SimpleCNN's 4, gave +0.07 +- 0.31 (3/3). experiments/README.md
PRUNE = {"resnet18": (("channel", 0.5, ("technique.epochs=12",)),)}
PRUNE_DEFAULT = (("channel", 0.5, ()), ("l1_unstructured", 0.9, ()))


def pruning(bench, models) -> list[dict]:
    """Channel 0.5 and unstructured 0.9 at default settings (fine-tune epochs and lr as shipped, unless
    PRUNE gives the model a recipe, which its row names), then unstructured 0.9 + static int8 on SimpleCNN
    (the sizes compound), each over bench.seeds (each seed its own baseline): mean ± std of the change, means
    of the ratios."""
    rows = []
    for model in models:
        for method, amount, recipe in PRUNE.get(model, PRUNE_DEFAULT):
            # a recipe's runs get their own folders: the default runs' results stay readable beside them
            name = "_".join([f"prune_{method}_{model}", *(o.split(".")[-1].replace("=", "") for o in recipe)])
            runs = [
                bench.job(
                    [
                        *bench.data_args(model),
                        f"model={model}",
                        "technique=prune",
                        f"technique.method={method}",
                        f"technique.amount={amount}",
                        *recipe,
                        f"seed={s}",
                    ],
                    seeded(name, s),
                )
                for s in bench.seeds
            ]
            rows.append(fit_row(f"{model} {method} {amount}{recipe_note(recipe)}", bench.dataset, runs))
    if "simple_cnn" not in models:
        return rows
    runs = [
        bench.job(
            [
                *bench.data_args(),
                "technique=pipeline",
                "technique.order=[prune,quant]",
                "model=simple_cnn",
                "technique.prune.amount=0.9",
                f"seed={s}",
            ],
            seeded("pipeline_unstructured_int8_simple_cnn", s),
        )
        for s in bench.seeds
    ]
    rows.append(fit_row("simple_cnn unstructured 0.9 + static int8", bench.dataset, runs))
    return rows


SHARE = ("simple_cnn", "mnist_mlp")  # Deep Compression's two kinds of model: a LeNet-5-like CNN, LeNet-300-100-like MLP
# a model's own pruning recipe in the share rows, for both its sharing and its int8 row. The 784-128-10 MLP at
# 0.95 lost 1.46 +- 0.12 test points on Fashion-MNIST with the pipeline's 2 epochs at lr 1e-3, and 0.48 +- 0.27
# with 8 epochs at 3e-3 (3 seeds each; recipes tried: experiments/README.md, weight sharing)
SHARE_RECIPE = {"mnist_mlp": ("technique.prune.epochs=8", "technique.prune.lr=3e-3")}


def sharing(bench, models=SHARE, amounts=(0.9, 0.95)) -> list[dict]:
    """Deep Compression's three steps against prune + int8, per model, amount and bench.seeds:
    unstructured pruning, then weight sharing at 4 bits (technique=cluster) stored as codebook +
    coded indices. At 0.9 a coded zero mask costs about as much as the 4-bit codes."""
    rows = []
    for model in models:
        for amount in amounts:
            for what, order in (("cluster 4 bits + coding", "[prune,cluster]"), ("static int8", "[prune,quant]")):
                name = f"share_{order.strip('[]').replace(',', '_')}_{model}" + (
                    "" if amount == 0.9 else f"_{amount:g}"
                )
                recipe = SHARE_RECIPE.get(model, ())
                runs = [
                    bench.job(
                        [
                            *bench.data_args(model),
                            "technique=pipeline",
                            f"technique.order={order}",
                            f"teacher={model}",
                            f"model={model}",
                            f"technique.prune.amount={amount}",
                            *recipe,
                            f"seed={s}",
                        ],
                        seeded(name, s),
                    )
                    for s in bench.seeds
                ]
                rows.append(
                    fit_row(f"{model} unstructured {amount:g}{recipe_note(recipe)} + {what}", bench.dataset, runs)
                )
    return rows
