"""Stage fits shared between jobs (compressor/prefixes.py, issue 43): two pipelines that start with
the same distillation train it once, a longer fit of the same schedule continues a shorter one and
ends where a full fit from scratch ends, and a job killed mid-pipeline reuses what it finished."""

import json

import torch

from compressor.storage import artifact
from tests.conftest import FAST, run_job
from tests.test_faults import kill_after_stage_checkpoints, run_in, start

KD = ["technique=pipeline", "technique.kd.epochs=2", "technique.prune.epochs=1", "technique.quant.mode=static"]


def weights(r: dict) -> dict:
    from pathlib import Path

    return artifact.load(Path(r["run"]["run_dir"]) / artifact.FILENAME).state_dict()


def test_two_pipelines_with_the_same_distillation_train_it_once(tmp_path, monkeypatch):
    from compressor.training import teacher_logits

    teacher_runs = []  # the teacher over the training split (teacher_once): only for a fit that trains
    computed = teacher_logits.computed
    monkeypatch.setattr(teacher_logits, "computed", lambda *a: teacher_runs.append(1) or computed(*a))
    first = run_job(tmp_path, [*KD, "technique.order=[kd,prune]"], "first")
    second = run_job(tmp_path, [*KD, "technique.order=[kd,quant]"], "second")
    assert first["stages"][0]["epochs_trained"] == 2 and first["stages"][0]["epochs_reused"] == 0
    assert second["stages"][0]["epochs_trained"] == 0 and second["stages"][0]["epochs_reused"] == 2
    assert len(teacher_runs) == 1 and second["stages"][0]["teacher_once"] is True
    assert first["stages"][1]["epochs_trained"] == 1  # prune after it: a prefix of its own
    other = run_job(tmp_path, [*KD, "technique.order=[kd,quant]", "technique.kd.temperature=2.0"], "other")
    assert other["stages"][0]["epochs_trained"] == 2  # another recipe is another fit


def test_a_longer_fit_continues_a_shorter_one_and_equals_a_full_fit(tmp_path):
    """A search's first rung stops after 1 of 2 epochs on the 2-epoch schedule; its promotion trains
    only the second epoch, and the student equals one distilled for 2 epochs from scratch."""
    short = run_job(tmp_path / "a", ["technique=kd", "technique.epochs=1", "technique.schedule_epochs=2"], "short")
    full = run_job(tmp_path / "a", ["technique=kd", "technique.epochs=2", "technique.schedule_epochs=2"], "full")
    assert short["stages"][0]["epochs_trained"] == 1
    assert full["stages"][0]["epochs_reused"] == 1 and full["stages"][0]["epochs_trained"] == 1
    scratch = run_job(tmp_path / "b", ["technique=kd", "technique.epochs=2"], "scratch")
    assert scratch["stages"][0]["epochs_trained"] == 2
    a, b = weights(full), weights(scratch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a fit already longer than asked is not cut short: the shorter job trains its own
    again = run_job(tmp_path / "a", ["technique=kd", "technique.epochs=1", "technique.schedule_epochs=2"], "again")
    assert again["run"].get("reused_from")  # the same job: found in the index, not retrained
    fresh = run_job(
        tmp_path / "a", ["technique=kd", "technique.epochs=1", "technique.schedule_epochs=2", "rerun=true"], "fresh"
    )
    assert fresh["stages"][0]["epochs_trained"] == 1 and fresh["test/acc"] == short["test/acc"]


def test_a_pipeline_killed_in_its_second_stage_reuses_the_first(tmp_path):
    args = [
        *FAST,
        "technique=pipeline",
        "technique.order=[kd,prune]",
        "technique.kd.epochs=2",
        "technique.prune.epochs=4",
        "dataset.batch_size=32",
        "logger=none",
    ]
    kill_after_stage_checkpoints(start(args, tmp_path), tmp_path, 2)  # kd's folder, then prune's
    again = run_in(tmp_path, args)
    assert again.returncode == 0, again.stderr[-2000:]
    (path,) = (tmp_path / "outputs" / "runs").glob("*/results.json")
    kd, prune = json.loads(path.read_text())["stages"]
    assert kd["epochs_reused"] == 2 and kd["epochs_trained"] == 0
    assert prune["epochs_reused"] >= 1 and prune["epochs_reused"] + prune["epochs_trained"] == 4


def test_a_reference_is_measured_once_per_process_until_its_file_changes(tmp_path, monkeypatch):
    """Every trial of a search starts from the same cached baseline: its test and validation
    accuracy are measured by the first and read by the others (a copy each: one trial's additions
    do not reach the next); other data, or the file rewritten, measure it again."""
    import os

    from compressor import job

    calls = []
    monkeypatch.setattr(
        job, "evaluate", lambda model, dm, example, path: calls.append(path) or ({"test/acc": 0.9}, "l", {})
    )
    monkeypatch.setattr(job, "_EVALUATED", {})
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"weights")
    ref = job.Reference(cfg=None, model=None, path=f, record={})
    first, _, _ = job.evaluated_once(ref, None, None, {"data": 1})
    first["latency/b1_ms"] = 1.0
    again, logits, _ = job.evaluated_once(ref, None, None, {"data": 1})
    assert len(calls) == 1 and again == {"test/acc": 0.9} and logits == "l"
    job.evaluated_once(ref, None, None, {"data": 2})
    assert len(calls) == 2
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    job.evaluated_once(ref, None, None, {"data": 1})
    assert len(calls) == 3
