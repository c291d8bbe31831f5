"""search=default: trials through the stages, a frontier no tried file dominates, a shipped file whose
reported accuracy is its own, finished trials not retrained, and 'nothing fits' said in one line."""

import csv
import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from compressor import certify
from compressor.search import launch
from compressor.search.decide import decide, pareto
from compressor.search.rungs import second_rung
from tests.conftest import make_cfg

SEARCH = [
    "search=default",
    "budget.max_drop=1",
    "dataset=digits",
    "train.epochs=2",
    "latency.reps=2",
    "latency.rounds=1",
    "trainer.enable_progress_bar=false",
    "search.runtime=onnxruntime",
    "search.promote=1",
    "search.skip_outclassed=false",
]  # promote on digits whatever the int8 anchor reaches: the continuation is tested


def test_a_search_needs_a_budget_and_known_values(cli):
    proc = cli("search=default", "dataset=digits")
    assert proc.returncode == 2 and "budget.max_drop" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = cli("search=default", "budget.max_drop=1", "search.objective=speed")
    assert proc.returncode == 2 and "search.objective" in proc.stderr and "latency_b1" in proc.stderr


# the reference a decision compares with: the baseline's figures, one unit each
REFERENCE = {
    "baseline": {"val/acc": 0.9, "test/acc": 0.9, "compress/size_mb": 1.0, "latency/b1_ms": 1.0, "latency/b64_ms": 1.0}
}


def row(val_drop, gain, name):
    return {
        "recipe": name,
        "runtime": "onnxruntime",
        "precision": "fp32",
        "file": f"{name}.onnx",
        "val/acc": 0.9 - val_drop / 100,
        "val_drop": val_drop,
        "test_drop": val_drop + 0.1,
        "speedup_b1": gain,
        "smaller": 2.0,
        "size_mb": 1.0,
        "stages": 1,
        "path": f"/t/{name}/{name}.onnx",
    }


def test_the_frontier_keeps_undominated_files_and_nothing_fits_is_one_line():
    rows = [row(0.5, 2.0, "a"), row(0.2, 1.5, "b"), row(0.6, 1.9, "c"), row(2.0, 4.0, "d")]
    assert [r["recipe"] for r in pareto(rows, "speedup_b1")] == ["d", "a", "b"]  # c: a is better on both
    s = OmegaConf.create({"objective": "latency_b1", "runtime": "any"})
    read = []  # the files the test set is read for: the frontier's and the chosen one, no other
    chosen = decide(rows, "speedup_b1", 1.0, REFERENCE, s, timer=apart, tester=lambda rs, b: read.extend(rs))
    assert sorted({r["recipe"] for r in read}) == ["a", "b", "d"]
    assert chosen["chosen"]["recipe"] == "a" and "ship a.onnx" in chosen["verdict"] and chosen["held/test"]
    assert "Tie" not in chosen["verdict"]
    none = decide(rows, "speedup_b1", 0.1, REFERENCE, s)
    assert none["chosen"] is None and "nothing fits budget.max_drop=0.1" in none["verdict"]
    assert "b.onnx" in none["verdict"] and "[over budget]" in none["verdict"] and "\n" not in none["verdict"]


def apart(contenders, batch, threads):
    """Re-timing that agrees with the trials' order, rounds far apart: no tie."""
    return {i: [1.0 / c["speedup_b1"]] * 5 for i, c in enumerate(contenders)}


def test_a_tie_within_timing_noise_goes_to_the_smaller_file_and_says_so():
    """Two files within the budget, 2.0x and 1.9x in their trials: timed again side by side, their
    rounds overlap, so the smaller file ships and the verdict says why."""
    big = {**row(0.3, 2.0, "big"), "size_mb": 2.0, "stages": 2, "path": "/t/big/big.onnx"}
    small = {**row(0.4, 1.9, "small"), "size_mb": 0.5, "stages": 2, "path": "/t/small/small.onnx"}
    s = OmegaConf.create({"objective": "latency_b1", "runtime": "any"})
    noisy = {0: [0.50, 0.55, 0.48, 0.60, 0.52], 1: [0.53, 0.51, 0.58, 0.54, 0.57]}
    out = decide([big, small], "speedup_b1", 1.0, REFERENCE, s, timer=lambda c, b, t: noisy)
    assert out["chosen"]["recipe"] == "small" and out["timing"]["tie"]
    assert "Tie within timing noise" in out["verdict"] and "the smaller file" in out["verdict"]
    assert len(out["timing"]["timed"]) == 2 and out["timing"]["timed"][0]["rounds_ms"] == noisy[0]
    clear = {0: [0.50, 0.51, 0.50, 0.52, 0.50], 1: [0.60, 0.61, 0.62, 0.60, 0.63]}
    out = decide([big, small], "speedup_b1", 1.0, REFERENCE, s, timer=lambda c, b, t: clear)
    assert out["chosen"]["recipe"] == "big" and not out["timing"]["tie"] and "Tie" not in out["verdict"]
    same_size = {**small, "size_mb": 2.0, "stages": 1}  # equal size: fewer stages wins
    out = decide([big, same_size], "speedup_b1", 1.0, REFERENCE, s, timer=lambda c, b, t: noisy)
    assert out["chosen"]["recipe"] == "small"
    # one OpenVINO file compiled static and dynamic: the verdict names the tied one, and only it
    ov = [{**big, "path": "/t/ov/model.int8.xml", "static_shape": True}, {**big, "path": "/t/ov/model.int8.xml"}]
    three = {0: [0.30, 0.31, 0.32, 0.30, 0.31], 1: [0.50, 0.52, 0.55, 0.51, 0.50], 2: [0.31, 0.32, 0.33, 0.31, 0.32]}
    out = decide([*ov, small], "speedup_b1", 1.0, REFERENCE, s, timer=lambda c, b, t: three)
    assert out["chosen"]["recipe"] == "small" and "ov/model.int8.xml static 0.3000-0.3150 ms" in out["verdict"]
    assert out["verdict"].count("ov/model.int8.xml") == 1


def test_a_trial_that_cannot_win_is_not_promoted():
    """int8 of the model itself (nothing to fine-tune: already its full recipe) holds 4x within the
    budget; a pruned trial whose files reach at most 2x stays 2x however long it trains, so it is
    not promoted, while one at 3.5x (over 0.8 x 4) is. The gains are the latency table's figures
    (compressor/search/latency.py), so nothing is timed again here. search.skip_outclassed=false
    promotes both."""

    def record(label, point, gains, drop):
        return {"label": label, "point": point, "candidates": [{**row(drop, g, label), "speedup_b1": g} for g in gains]}

    int8 = record("int8", {"student": "none", "prune": "none", "precision": "int8"}, [4.0, 1.0], 0.4)
    slow = record(
        "prune channel 0.25", {"student": "none", "prune": "channel 0.25", "precision": "fp32"}, [2.0, 1.5], 1.5
    )
    close = record("prune channel 0.75", {"student": "none", "prune": "channel 0.75", "precision": "fp32"}, [3.5], 2.5)

    class Ran:
        def __init__(self):
            self.points = []

        def run_many(self, points, epochs, rung):
            self.points += points
            return [{"label": "rung2", "point": p, "candidates": []} for p in points]

    s = OmegaConf.create(
        {"promote": 3, "margin": 2.0, "parallel": 1, "skip_outclassed": True, "techniques": ["kd", "prune", "quant"]}
    )
    ran = Ran()
    finals, outclassed = second_rung(ran, [int8, slow, close], s, "speedup_b1", 1.0, float("inf"), {})
    assert outclassed == ["prune channel 0.25"] and ran.points == [close["point"]] and finals[0] is int8
    ran = Ran()
    s.skip_outclassed = False
    assert second_rung(ran, [int8, slow, close], s, "speedup_b1", 1.0, float("inf"), {})[1] == []
    assert ran.points == [close["point"], slow["point"]]


def where(job) -> tuple[str, object]:
    """A stand-in trial: which process ran it."""
    import os

    return ("error", "no") if job == "bad" else ("ok", (job, os.getpid()))


@pytest.mark.parametrize(
    "launcher",
    [
        None,
        {
            "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
            "timeout_min": 5,
            "cpus_per_task": 1,
            "tasks_per_node": 1,
            "nodes": 1,
        },
    ],
    ids=["joblib", "submitit_local"],
)
def test_parallel_trials_run_in_other_processes_and_keep_their_order(tmp_path, launcher, monkeypatch):
    import os

    # pytest imports this file as `test_search`; submitit's job process must find it by that name
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))

    out = launch.run(["a", "bad", "c"], 2, launcher, tmp_path, fn=where)
    assert [o[0] for o in out] == ["ok", "error", "ok"] and [out[0][1][0], out[2][1][0]] == ["a", "c"], out
    assert {out[0][1][1], out[2][1][1]}.isdisjoint({os.getpid()})
    assert launch.run(["a"], 2, launcher, tmp_path, fn=where)[0][1][1] == os.getpid()  # one trial: no process started


def extract_dir(job) -> tuple[str, object]:
    return "ok", job.dataset.extract_dir


def test_a_parallel_trial_gets_its_config_resolved_where_hydra_composed_it(tmp_path):
    from compressor.config import compose

    jobs = [compose(["dataset=fashion_mnist", f"seed={s}"], tmp_path, f"t{s}") for s in (0, 1)]
    assert "${hydra:" in OmegaConf.to_yaml(jobs[0].dataset, resolve=False)  # resolvable only beside Hydra
    out = launch.run(jobs, 2, None, tmp_path, fn=extract_dir)
    assert [o[0] for o in out] == ["ok", "ok"] and out[0][1] == jobs[0].dataset.extract_dir, out


@pytest.mark.slow  # ~2 min: make test-all
def test_a_search_on_digits_ships_its_own_file_and_a_rerun_skips_finished_trials(tmp_path):
    import compressor
    from compressor import measure
    from compressor.config import compose
    from compressor.runtimes.onnx import OnnxModel

    outputs = tmp_path / "outputs"
    # digits holds 180 validation images, 90 to certify on: 5 points is a budget they can certify
    search = [*(a for a in SEARCH if not a.startswith("budget.max_drop=")), "budget.max_drop=5"]
    first = compressor.run(compose([*search, "search.max_trials=2", "search.parallel=2"], outputs, "first"))  # joblib
    rows = list(csv.DictReader((outputs / "first" / "frontier.csv").open()))
    assert rows and (outputs / "first" / "frontier.png").is_file() and (outputs / "first" / "summary.md").is_file()
    gains = [(float(r["val/acc"]), float(r["speedup_b1"]), r["frontier"] == "True") for r in rows]
    for acc, gain, on_front in gains:  # no frontier point is dominated by another tried point
        beaten = any(a >= acc and g >= gain and (a > acc or g > gain) for a, g, _ in gains)
        assert on_front == (not beaten)
    chosen = first["chosen"]
    assert chosen is not None and first["verdict"].startswith("search: ship")
    shipped = outputs / "first" / "ship" / chosen["file"]
    dm = instantiate(make_cfg(tmp_path).dataset)
    dm.setup()
    logits, labels = measure.predict(OnnxModel(shipped), dm.val_dataloader())
    selection, held_out = certify.halves(len(labels))  # the search chose on the selection half alone
    assert measure.accuracy(logits[selection], labels[selection]) == pytest.approx(chosen["val/acc"], abs=1e-6)
    base = certify.read(Path(chosen["path"]).parent, chosen["label"])[0]["val"]  # and certified on the other
    right = measure.correct(logits, labels)
    level = chosen["certify"]["confidence"]  # its share of the sequence's 95%
    assert 0.95 <= level < 1 and chosen["certify"] == certify.paired(base[held_out], right[held_out], level)
    assert chosen["certify"]["bound"] <= 5 and "budget 5 pts certified at 95% confidence" in first["verdict"]
    logits, labels = measure.predict(OnnxModel(shipped), dm.test_dataloader())
    assert measure.accuracy(logits, labels) == pytest.approx(chosen["test/acc"], abs=1e-6)

    compressor.run(compose([*search, "search.max_trials=3"], outputs, "again"))  # as if stopped after two, rerun
    before = [json.loads(x) for x in (outputs / "first" / "trials.jsonl").read_text().splitlines()]
    after = [json.loads(x) for x in (outputs / "again" / "trials.jsonl").read_text().splitlines()]
    done = {json.dumps(t["point"], sort_keys=True) for t in before if t["rung"] == "rung1"}
    again = [t for t in after if t["rung"] == "rung1" and json.dumps(t["point"], sort_keys=True) in done]
    assert len(again) == 2 and all(t["reused"] for t in again), "a finished trial was trained again"
    promoted = [t for t in before if t["rung"] == "rung2"]  # its first rung's fit continued, not restarted
    assert all(t["stages"][0]["epochs_reused"] >= 1 for t in promoted), promoted
    spent = json.loads((outputs / "first" / "search.json").read_text())
    assert set(spent["minutes"]) == {"baseline", "first rung", "second rung", "deciding (timing the close files)"}
    assert spent["epochs"]["reused"] >= sum(t["stages"][0]["epochs_reused"] for t in promoted)
    assert "training epochs reused]" in first["verdict"]
    assert not any(k.startswith("test") for t in before for c in t["candidates"] for k in c)  # validation only
    trial = json.loads((Path(before[1]["run_dir"]) / "results.json").read_text())  # its files never read test
    files = [e for kinds in trial["export"].values() for e in kinds.values() if "path" in e]
    assert files and all("test/acc" not in e and e["agreement_on"] == "val" for e in files), trial["export"]
    assert any(not t["reused"] for t in after if t["rung"] == "rung1"), "the third trial is new"
    assert Path(outputs / "again" / "search.json").is_file()


def test_a_latency_objective_samples_no_weight_sharing():
    from compressor.config import CONF
    from compressor.search import space

    s = OmegaConf.merge(OmegaConf.load(CONF / "search" / "default.yaml"), {"students": [], "channel": []})
    precision = lambda search: space.dimensions(search, "simple_cnn", CONF)["precision"]  # noqa: E731
    assert precision(s) == ["fp32", "int8"]  # its files run float kernels: it cannot win on latency
    assert precision(OmegaConf.merge(s, {"precisions": ["cluster"]})) == ["fp32"]
    assert precision(OmegaConf.merge(s, {"objective": "size"})) == ["fp32", "int8", "cluster"]


def test_the_space_is_what_each_technique_declares():
    """search/space.py names no technique: each stage class declares its axis (issue 56). The default
    space's overrides are the ones written by hand before it: the same jobs, so the same keys."""
    from compressor.config import CONF
    from compressor.search import space

    s = OmegaConf.load(CONF / "search" / "default.yaml")
    dims = space.dimensions(s, "simple_cnn", CONF)
    assert dims == {
        "student": ["none", "student_of_simple_cnn"],
        "prune": ["none", "channel 0.25", "channel 0.5", "channel 0.75", "unstructured 0.9"],
        "precision": ["fp32", "int8"],
    }
    assert space.anchors(dims, s) == [{"student": "none", "prune": "none", "precision": "int8"}]
    point = {"student": "student_of_simple_cnn", "prune": "unstructured 0.9", "precision": "int8"}
    assert space.label(point, s) == "kd into student_of_simple_cnn + prune unstructured 0.9 + int8"
    epochs = {"kd": 4, "prune": 2, "cluster": 1}
    assert space.overrides(point, s, "simple_cnn", "any", epochs, {"kd": 12, "prune": 4, "cluster": 2}) == [
        "export=all",
        "export.test=false",
        "teacher=simple_cnn",
        "technique=pipeline",
        "technique.order=[kd,prune,quant]",
        "model=student_of_simple_cnn",
        "technique.kd.epochs=4",
        "technique.kd.schedule_epochs=12",
        "technique.prune.method=l1_unstructured",
        "technique.prune.amount=0.9",
        "technique.prune.epochs=2",
        "technique.prune.schedule_epochs=4",
        "technique.quant.mode=static",
    ]
    assert space.fine_tunes(point, s) and not space.fine_tunes({**point, "student": "none", "prune": "none"}, s)
    assert space.full_epochs(s, CONF) == {"kd": 12, "prune": 4, "cluster": 2}

    import re

    # nor do the other modules above the techniques (issue 56): a technique's name is in its own folder
    kinds = {OmegaConf.load(p).get("kind") for p in (CONF / "technique").glob("*.yaml")} - {None, "baseline"}
    package = Path(space.__file__).parents[1]
    named = [
        f"{module}: {kind}"
        for module in ("search/space.py", "report/build.py", "results.py", "job.py")
        for kind in kinds
        if re.search(rf"\b{kind}\b", (package / module).read_text())
    ]
    assert kinds >= {"kd", "prune", "quant", "cluster", "nm", "sensitivity"} and not named, named


def test_a_point_that_is_not_a_valid_job_is_refused_before_any_trial_runs(tmp_path, monkeypatch):
    """Each choice of each dimension is composed and checked when the space is built (issue 56): a
    bad one is one line naming the point, not a failed trial found later."""
    from compressor.config import compose
    from compressor.errors import ConfigError
    from compressor.search import frontier, space

    cfg = compose([*SEARCH], tmp_path / "outputs", "search")
    trials = frontier.Trials(cfg, "simple_cnn", ["dataset=digits"], tmp_path, None, {"kd": 1, "prune": 1, "cluster": 1})
    dims = {"student": ["none"], "prune": ["none", "channel 0.5"], "precision": ["fp32", "int8"]}
    frontier.refuse_invalid(trials, dims, {"kd": 1, "prune": 1, "cluster": 1})  # all valid: nothing raised
    real = space.overrides

    def broken(point, *args, **kwargs):  # a prune choice whose amount no job takes
        out = real(point, *args, **kwargs)
        return [o.replace("technique.prune.amount=0.5", "technique.prune.amount=1.5") for o in out]

    monkeypatch.setattr(space, "overrides", broken)
    with pytest.raises(ConfigError) as err:
        frontier.refuse_invalid(trials, dims, {"kd": 1, "prune": 1, "cluster": 1})
    message = str(err.value)
    assert message.startswith("search: the point prune channel 0.5 (prune=channel 0.5) is not a valid job:")
    assert "technique.prune.amount" in message and "\n" not in message


def test_one_trial_per_fit_is_promoted():
    """The int8 and fp32 trials of one pruned student share a fit: only the faster is promoted, and
    the third slot goes to another structure (the cut student alone + int8), not to its twin."""
    from compressor.search import space

    def record(point, gain):
        return {
            "label": space.label(point, s),
            "point": point,
            "candidates": [{**row(0.5, gain, "t"), "speedup_b1": gain}],
        }

    s = OmegaConf.create(
        {
            "promote": 3,
            "margin": 2.0,
            "parallel": 1,
            "skip_outclassed": False,
            "techniques": ["kd", "prune", "quant"],
        }
    )
    both = {"student": "simple_cnn_half", "prune": "channel 0.5"}
    twins = [record({**both, "precision": "int8"}, 15.0), record({**both, "precision": "fp32"}, 13.0)]
    pruned = record({"student": "none", "prune": "channel 0.5", "precision": "int8"}, 11.0)
    student = record({"student": "simple_cnn_half", "prune": "none", "precision": "int8"}, 9.0)

    class Ran:
        points: list = []

        def run_many(self, points, epochs, rung):
            self.points = [*self.points, *points]
            return []

    ran = Ran()
    second_rung(ran, [*twins, pruned, student], s, "speedup_b1", 1.0, float("inf"), {})
    assert ran.points == [twins[0]["point"], pruned["point"], student["point"]]
    assert space.fit_of(twins[0]["point"], s) == space.fit_of(twins[1]["point"], s)
