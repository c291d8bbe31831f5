"""What a trial's job gives the search: its shippable files with their gains over the baseline (timed
in the trial's own process), the epochs each stage trained or reused, and the line trials.jsonl keeps.
Trials run with export.test=false: their files are scored on validation alone, and `tested` reads
the test set for the frontier and the chosen file only."""

from pathlib import Path

from compressor import certify


def validation_only(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k != "baseline"}
    out["candidates"] = [{k: v for k, v in c.items() if not k.startswith("test")} for c in record["candidates"]]
    return out


def trained(r: dict, whole_job_reused: bool) -> list[dict]:
    """Per stage of a trial: the epochs it trained and those it took from an earlier fit (a shared
    pipeline prefix, a first rung it continued, or the whole job found in the index)."""
    out = []
    for s in r.get("stages", []):
        epochs = s.get("epochs") or 0
        reused = epochs if whole_job_reused else s.get("epochs_reused", 0)
        out.append({"stage": s["stage"], "epochs_trained": epochs - reused, "epochs_reused": reused})
    return out


def candidates(r: dict, runtime: str, halves: bool = True) -> list[dict]:
    """Every shippable file of one job, with its gains over the baseline timed in the same process;
    with `halves`, its validation figures on the selection half (`selected`)."""
    b = r["baseline"]
    if r["run"].get("at_chance"):  # a broken model is never a result
        return []
    if "deploy" in r:
        reference, files = r["deploy"].get("baseline", b), r["deploy"]["candidates"]
    else:  # export=none: the run's own model
        reference = b
        files = [
            {
                "runtime": "torch",
                "precision": None,
                "file": "model.safetensors",
                "size_mb": r["compress/size_mb"],
                **{k: r[k] for k in ("val/acc", "test/acc", "latency/b1_ms", "latency/b64_ms")},
            }
        ]
    out = []
    for c in files:
        if runtime != "any" and c["runtime"] != runtime:
            continue
        label = "model" if c.get("label", "(the run's model)").endswith("(the run's model)") else c["label"]
        out.append(
            {
                "runtime": c["runtime"],
                "precision": c.get("precision"),
                "file": c["file"],
                "label": label,
                "static_shape": c.get("static_shape", False),
                "stages": len(r.get("stages", [])),
                "path": str(Path(r["run"]["run_dir"]) / c["file"]),
                "size_mb": c["size_mb"],
                "val/acc": c["val/acc"],
                "test/acc": c["test/acc"],
                "latency/b1_ms": c["latency/b1_ms"],
                "latency/b64_ms": c["latency/b64_ms"],
                "speedup_b1": reference["latency/b1_ms"] / c["latency/b1_ms"],
                "speedup_b64": reference["latency/b64_ms"] / c["latency/b64_ms"],
                "smaller": b["compress/size_mb"] / c["size_mb"],
                "val_drop": 100 * (b["val/acc"] - c["val/acc"]),
                "test_drop": None if c["test/acc"] is None else 100 * (b["test/acc"] - c["test/acc"]),
            }
        )
        if halves:  # budget.confidence: decide on the selection half (else on every validation image)
            selected(out[-1], r["run"]["run_dir"])
    return out


def selected(row: dict, run_dir) -> None:
    """A candidate's validation figures on the selection half alone (compressor/certify.py): what the
    search decides on; the certification half is read once, in order, for the files it tests."""
    found = certify.read(run_dir, row["label"])
    if found is None or "val" not in found[1]:
        row["certifiable"] = False  # no answers image by image: its validation figure is all the images'
        return
    base, mine = found[0]["val"], found[1]["val"]
    selection, _ = certify.halves(len(base))
    row["val/acc"] = mine[selection].float().mean().item()
    row["val_drop"] = 100 * (base[selection].float().mean().item() - row["val/acc"])
    row["certifiable"], row["val_images"] = True, len(selection)


def certification(row: dict, confidence: float) -> dict:
    """The candidate's drop and its bound on the certification half (`certify.paired`)."""
    base, mine = (bits["val"] for bits in certify.read(str(Path(row["path"]).parent), row["label"]))
    _, held_out = certify.halves(len(base))
    return certify.paired(base[held_out], mine[held_out], confidence)


def tested(rows: list[dict], baseline_test: float) -> dict:
    """Fill in the test accuracy of the rows a trial measured on validation only (export.test=false):
    each such file run once on the test set here, the data built from its trial's resolved config.
    Returns their answers image by image, {"<path>[ static]": bits} (the search's correct.json)."""
    todo = [r for r in rows if r.get("test_drop") is None]
    if not todo:
        return {}
    from omegaconf import OmegaConf

    from compressor import measure
    from compressor.data import user
    from compressor.runtimes.deploy import load

    dm = user.build(OmegaConf.load(Path(todo[0]["path"]).parent / "config.yaml").dataset)
    seen, answers = {}, {}
    for r in todo:
        key = (r["path"], r.get("static_shape", False))
        if key not in seen:
            right = measure.correct(*measure.predict(load(r), dm.test_dataloader()))
            seen[key], answers[r["path"] + " static" * key[1]] = right.float().mean().item(), right
        r["test/acc"], r["test_drop"] = seen[key], 100 * (baseline_test - seen[key])
    return answers
