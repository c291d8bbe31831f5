"""Accuracy budgets on digits: the sensitivity scan against a direct re-measurement, a budgeted
prune within its budget, a budgeted quant that must keep layers float, replay of a saved recipe,
and a pipeline sharing one budget."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.utils.prune as tprune
from torch import nn
from torch.ao.quantization import QConfigMapping, get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from compressor import certify, measure
from compressor.budget import TOLERANCE
from compressor.data import user
from compressor.storage import artifact
from compressor.techniques.prune import budget
from tests.conftest import make_cfg, run_job

DIGITS = []


def baseline(outputs: Path) -> nn.Module:
    return artifact.load(next((outputs / "cache").rglob(artifact.FILENAME)))


def loaders(tmp_path):
    cfg = make_cfg(tmp_path)
    dm = user.build(cfg.dataset)
    dm.setup()
    return dm


def acc(model, loader):
    return measure.accuracy(*measure.predict(model, loader))


def correct(model, loader):
    with torch.no_grad():
        return torch.cat([(model.eval()(x).argmax(1) == y).float() for x, y in loader])


def zeros(model):
    return {n: (m.weight == 0) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("sensitivity")
    r = run_job(root, ["technique=sensitivity", "budget.grid=[0.3,0.6,0.9]", *DIGITS])
    return root, r


def test_scan_matches_a_direct_re_measurement(scan):
    root, r = scan
    rows = r["stages"][0]["rows"]
    model, dm = baseline(root / "outputs"), loaders(root)
    val = dm.val_dataloader()
    base = acc(model, val)
    # unstructured: torch's own L1 pruning of one layer
    row = next(x for x in rows if (x["method"], x["layer"], x["amount"]) == ("l1_unstructured", "features.4", 0.6))
    direct = copy.deepcopy(model)
    tprune.l1_unstructured(dict(direct.named_modules())["features.4"], "weight", amount=0.6)
    assert row["val/acc"] == pytest.approx(acc(direct, val), abs=1e-6)
    assert row["drop"] == pytest.approx(100 * (base - acc(direct, val)), abs=1e-4)
    # int8 for one layer alone: torch.ao FX with a mapping written here
    row = next(x for x in rows if (x["method"], x["layer"]) == ("int8_only", "classifier.3"))
    calibration = [x for x, _ in list(dm.train_dataloader())[:32]]
    torch.backends.quantized.engine = "x86"
    mapping = QConfigMapping().set_module_name("classifier.3", get_default_qconfig_mapping("x86").global_qconfig)
    prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, (calibration[0],))
    with torch.no_grad():
        for x in calibration:
            prepared(x)
    assert row["val/acc"] == pytest.approx(acc(convert_fx(prepared), val), abs=1e-6)
    # every layer, amount and method is there; channel skips the classifier
    layers = {x["layer"] for x in rows if x["method"] == "l1_unstructured"}
    assert layers == {"features.0", "features.4", "features.8", "classifier.0", "classifier.3"}
    assert {x["layer"] for x in rows if x["method"] == "channel"} == layers - {"classifier.3"}
    assert len([x for x in rows if x["method"] == "int8_all_but"]) == 5


def test_scan_writes_csv_plots_tensorboard_and_the_report_shows_them(scan):
    from compressor.report.build import build

    root, r = scan
    run_dir = Path(r["run"]["run_dir"])
    lines = (run_dir / "sensitivity.csv").read_text().splitlines()
    assert lines[0].startswith("kind,method,layer,amount") and len(lines) == 1 + len(r["stages"][0]["rows"])
    for png in ("sensitivity_prune.png", "sensitivity_quant.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {"scalars": [], "images": []}
    for folder in {p.parent for p in run_dir.rglob("events.*")}:
        found = EventAccumulator(str(folder)).Reload().Tags()
        for kind in tags:
            tags[kind] += found.get(kind, [])
    assert "sensitivity/channel/features.0" in tags["scalars"]
    assert any(t.startswith("sensitivity/") for t in tags["images"])
    summary = build(root / "outputs").read_text()
    assert "sensitivity_prune_digits_simple_cnn_seed0.png" in summary
    assert "sensitivity scan" not in summary  # a scan is not a compressed row
    assert (root / "outputs" / "sensitivity_prune_digits_simple_cnn_seed0.png").is_file()


def test_steps_take_the_most_saved_per_point_first():
    rows = [{"layer": "big", "amount": a, "drop": d, "saved": int(a * 1000)} for a, d in ((0.5, 0.0), (0.9, 2.0))] + [
        {"layer": "small", "amount": a, "drop": d, "saved": int(a * 10)} for a, d in ((0.5, 1.0), (0.9, 0.5))
    ]
    out = budget.steps(rows)
    assert [a for _, a in out] == [
        {"big": 0.5, "small": 0.0},
        {"big": 0.9, "small": 0.0},
        {"big": 0.9, "small": 0.5},
        {"big": 0.9, "small": 0.9},
    ]
    # a drop counts as the worst seen at or below the amount: small's 0.9 costs nothing beyond its 0.5
    assert [c for c, _ in out] == [0.0, 2.0, 3.0, 3.0]


def test_steps_continue_from_a_start_recipe():
    rows = [{"layer": "big", "amount": a, "drop": d, "saved": int(a * 1000)} for a, d in ((0.5, 0.0), (0.9, 2.0))] + [
        {"layer": "small", "amount": a, "drop": d, "saved": int(a * 10)} for a, d in ((0.5, 1.0), (0.9, 0.5))
    ]
    out = budget.steps(rows, {"big": 0.6, "small": 0.2})
    # big stands between grid amounts: its next is 0.9; small's next is 0.5; the start counts as free
    assert [a for _, a in out] == [{"big": 0.9, "small": 0.2}, {"big": 0.9, "small": 0.5}, {"big": 0.9, "small": 0.9}]
    assert out[0][0] == pytest.approx(2.0)


def single_amount_stage(method, scope="global"):
    from omegaconf import OmegaConf

    return OmegaConf.create({"method": method, "scope": scope, "include": ["*"], "exclude": [], "importance": "l1"})


@pytest.mark.parametrize("scope", ["global", "layer", "lamp"])
def test_a_single_amount_replays_as_its_per_layer_allocation(scope):
    """The search's first phase: one amount written as per-layer amounts prunes the same weights."""
    from compressor.models.cnn import SimpleCNN
    from compressor.techniques.layers import make_permanent
    from compressor.techniques.prune.callback import Pruning

    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 28)
    amounts = budget.allocation(model, single_amount_stage("l1_unstructured", scope), 0.7, [1, 1, 28, 28])
    if scope != "layer":  # global and LAMP ranking leave the layers at different amounts
        assert len(set(amounts.values())) > 1
    one, per_layer = copy.deepcopy(model), copy.deepcopy(model)
    Pruning(amount=0.7, scope=scope).apply(one, 0.7)
    Pruning(amounts=amounts).apply(per_layer, 1.0)
    make_permanent(one), make_permanent(per_layer)
    assert zeros(one).keys() == zeros(per_layer).keys()
    for name in zeros(one):
        assert torch.equal(zeros(one)[name], zeros(per_layer)[name]), name


def test_a_layer_the_global_ranking_empties_keeps_one_weight():
    """Amounts lie in [0, 1): ResNet-18's fc, all small weights, was emptied by global 0.99 and crashed the search."""
    from compressor.models.cnn import SimpleCNN
    from compressor.techniques.prune.callback import Pruning

    torch.manual_seed(0)
    model = SimpleCNN(1, 10, 28)
    with torch.no_grad():
        model.classifier[3].weight *= 1e-6
    amounts = budget.allocation(model, single_amount_stage("l1_unstructured"), 0.5, [1, 1, 28, 28])
    assert amounts["classifier.3"] == pytest.approx(1 - 1 / 2560)
    Pruning(amounts=amounts).apply(model, 1.0)  # a valid recipe
    assert int(torch.count_nonzero(model.classifier[3].weight)) == 1


def test_a_single_channel_amount_replays_as_its_per_layer_channel_counts():
    from compressor.models.cnn import SimpleCNN
    from compressor.techniques.prune.callback import Pruning

    torch.manual_seed(0)
    model, shape = SimpleCNN(1, 10, 28), [1, 1, 28, 28]
    amounts = budget.allocation(model, single_amount_stage("channel"), 0.5, shape)
    assert "classifier.3" not in amounts and len(set(amounts.values())) > 1
    one, per_layer = copy.deepcopy(model), copy.deepcopy(model)
    Pruning(amount=0.5, method="channel", scope="global", example_shape=shape).apply(one, 0.5)
    Pruning(amounts=amounts, method="channel", example_shape=shape).apply(per_layer, 1.0)
    width = lambda m: [x.weight.shape[0] for x in m.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]  # noqa: E731
    assert width(per_layer) == width(one) != width(model)
    assert measure.macs(per_layer, torch.randn(shape)) == measure.macs(one, torch.randn(shape))


@pytest.fixture(scope="module")
def budgeted_prune(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget_prune")
    return root, run_job(root, ["technique=prune", "budget.max_drop=1.0", "budget.grid=[0.3,0.6,0.9]", *DIGITS])


def test_budgeted_prune_meets_its_budget_on_validation(budgeted_prune):
    root, r = budgeted_prune
    b = r["budget"]
    assert b["held/val"] and b["val/drop"] <= 1.0
    assert isinstance(b["held/test"], bool) and "test/drop" in b
    search = b["stages"][0]
    assert search["searched"] and not search["over_budget"] and len(search["probes"]) >= 1
    amounts = r["stages"][0]["amounts"]
    assert amounts == search["amounts"] and any(a > 0 for a in amounts.values())
    assert r["compress/sparsity"] > 0.3
    # the search starts from the best single amount on validation and never ends below it
    singles = [p for p in search["probes"] if p["phase"] == "one amount"]
    assert singles and search["from_amount"] == max([p["amount"] for p in singles if p["within"]], default=0.0)
    assert r["compress/sparsity"] >= max([p["compress/sparsity"] for p in singles if p["within"]], default=0.0) - 1e-6
    model = artifact.load(Path(r["run"]["run_dir"]) / artifact.FILENAME)
    assert artifact.read(Path(r["run"]["run_dir"]) / artifact.FILENAME)[0]["history"][-1]["amounts"] == amounts
    # the search read the selection half of the validation images; the drop there, and its paired
    # standard error, image by image against the baseline
    val = loaders(root).val_dataloader()
    before, after = correct(baseline(root / "outputs"), val), correct(model, val)
    on, held_out = certify.halves(len(before))
    assert b["val/drop"] == pytest.approx(100 * (before[on].mean() - after[on].mean()).item(), abs=1e-5)
    d = before[on] - after[on]
    assert b["val/drop_se"] == pytest.approx(100 * d.std().item() / len(d) ** 0.5, abs=1e-6) and b["val/drop_se"] > 0
    # certified on the other half: digits' 90 images there cannot bound a drop within 1 point at 95%
    expected = certify.paired(before[held_out].bool(), after[held_out].bool(), 0.95)
    assert {k: b["certify"][k] for k in expected} == expected and b["certify"]["images"] == 90
    assert b["certified"] is False and r["run"]["label"].endswith("[over budget]")
    assert b["certify"]["images_needed"] is None or b["certify"]["images_needed"] > 90
    for name, sparsity in measure.layer_sparsity(model).items():
        assert sparsity == pytest.approx(amounts[name], abs=0.01), name
    assert "per-layer within 1 pts" in r["run"]["label"]


def test_replaying_a_saved_recipe_reproduces_the_masks(budgeted_prune, tmp_path):
    root, r = budgeted_prune
    amounts = r["stages"][0]["amounts"]
    override = "technique.amounts={" + ", ".join(f"{k}: {v}" for k, v in amounts.items()) + "}"
    replay = run_job(root, ["technique=prune", override, "budget.grid=[0.3,0.6,0.9]", *DIGITS], "replay")
    assert "budget" not in replay
    first = zeros(artifact.load(Path(r["run"]["run_dir"]) / artifact.FILENAME))
    again = zeros(artifact.load(Path(replay["run"]["run_dir"]) / artifact.FILENAME))
    assert first.keys() == again.keys()
    for name in first:
        assert torch.equal(first[name], again[name]), name
    assert replay["test/acc"] == r["test/acc"]  # same masks, same seed, same fine-tune


def test_when_nothing_fits_the_run_says_so_and_keeps_the_best_attempt(tmp_path, caplog):
    """A fine-tune that wrecks every candidate (Adam at lr 1): no recipe keeps validation accuracy,
    so the search keeps the probe that scored best, labels the run over budget, and still writes it."""
    with caplog.at_level("WARNING", logger="compressor"):
        r = run_job(
            tmp_path,
            [
                "technique=prune",
                "technique.lr=1.0",
                "technique.epochs=1",
                "budget.max_drop=0.5",
                "budget.grid=[0.5]",
                *DIGITS,
            ],
        )
    search = r["budget"]["stages"][0]
    assert search["over_budget"] and not any(p["within"] for p in search["probes"])
    best = max(search["probes"], key=lambda p: p["val/acc"])
    # the best attempt, fine-tuned as its probe was (both on the selection half)
    assert r["budget"]["stages"][-1]["val/acc"] == pytest.approx(best["val/acc"], abs=1e-6)
    assert not r["budget"]["held/val"] and r["run"]["label"].endswith("[over budget]")
    assert any("no per-layer pruning keeps validation accuracy" in m for m in caplog.messages)


def crafted(outputs: Path, path: Path) -> Path:
    """The digits baseline with four hidden units of classifier.0 scaled by 1000 and classifier.3
    scaled back: the same float function, but per-tensor int8 activations after classifier.0
    lose every other unit, so int8 everywhere collapses."""
    model = baseline(outputs)
    with torch.no_grad():
        fc1, fc2 = model.classifier[0], model.classifier[3]
        fc1.weight[:4] *= 1000
        fc1.bias[:4] *= 1000
        fc2.weight[:, :4] /= 1000
    torch.save(model.state_dict(), path)
    return path


def test_budgeted_quant_keeps_the_harmful_layers_float(budgeted_prune, tmp_path):
    root, _ = budgeted_prune
    ckpt = crafted(root / "outputs", tmp_path / "crafted.pt")
    full = run_job(root, ["technique=quant", f"model.checkpoint={ckpt}"], "full_int8")
    assert full["val/acc"] < full["baseline"]["val/acc"] - 0.3  # the case: int8 everywhere fails
    r = run_job(root, ["technique=quant", f"model.checkpoint={ckpt}", "budget.max_drop=1.0"], "budgeted_int8")
    kept = r["stages"][0]["keep_float"]
    assert kept and len(kept) < 5, kept
    assert set(kept) <= {"classifier.0", "classifier.3"}
    assert r["budget"]["held/val"] and set(r["budget"]["stages"][0]["why"]) == set(kept)
    int8_layers = [n for n in ("features.0", "features.4", "features.8")]
    assert not set(int8_layers) & set(r["stages"][0]["float_layers"])  # the rest really is int8
    path = Path(r["run"]["run_dir"]) / artifact.FILENAME
    assert artifact.read(path)[0]["kind"] == "ao_fx"
    dm = loaders(tmp_path)
    assert acc(artifact.load(path), dm.test_dataloader()) == pytest.approx(r["test/acc"], abs=1e-6)


def test_a_pipeline_shares_one_budget(tmp_path):
    r = run_job(
        tmp_path,
        [
            "technique=pipeline",
            "technique.order=[prune,quant]",
            "model=simple_cnn",
            "technique.prune.epochs=1",
            "budget.max_drop=2.0",
            "budget.grid=[0.5,0.9]",
            *DIGITS,
        ],
    )
    b = r["budget"]
    first, second = b["stages"]
    assert first["allowed_pts"] == pytest.approx(1.0)  # half for the first of two searched stages
    assert second["allowed_pts"] == pytest.approx(2.0 - first["used_pts"])  # what prune left
    assert first["used_pts"] + second["used_pts"] == pytest.approx(b["val/drop"], abs=1e-6)


@pytest.mark.parametrize("images", [180, 500, 1797])
def test_bench_counts_the_images_a_budget_allows_as_the_search_does(images):
    """make bench skips a tighter budget that allows as many wrong validation images as the last:
    its count must be the one the search's acceptance rule (acc >= floor - TOLERANCE) gives."""
    from experiments.budgets import images_allowed

    reference = 0.97
    for max_drop in (1.0, 0.75, 0.5, 0.3, 0.0):
        floor = reference - max_drop / 100
        passing = [k for k in range(images) if reference - k / images >= floor - TOLERANCE]
        assert images_allowed(max_drop, images) == max(passing)
    assert [images_allowed(d, 180) for d in (1.0, 0.75, 0.5)] == [1, 1, 0]
