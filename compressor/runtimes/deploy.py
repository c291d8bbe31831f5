"""Which file to ship, on which runtime, per batch size: the run's model exported to every runtime
`export` names, each export checked against PyTorch and all of them timed side by side.

export=onnx        model.onnx (+ model.int8.onnx, ONNX Runtime static int8)          onnxruntime
export=openvino    model.xml/.bin (+ model.int8.xml/.bin, NNCF int8 PTQ)             openvino
export=executorch  model.pte (+ model.int8.pte, XNNPACKQuantizer int8)               executorch
export=all         all three; export.runtimes=[my_pkg.my_runtime] adds a runtime of your own
Each runtime is a module of this package (compressor/runtimes/__init__.py). The fp32 exports are
of the run's float model; the int8 ones exist where the run quantized, and quantize that same float
model (before the run's quant stage) with the runtime's own PTQ. The
candidates to ship are the run's model as it is (torch, or its backend's file) and every export,
float and int8, that agrees with PyTorch's top-1 on >= 95% of test images (fp32: 99.5%; with
`export.test=false`, as a search's trials run, on validation images, and no file reads the test set): a
quantized run's fp32 ONNX file can be the fastest (it is the model before quantization, and its
own accuracy is reported). A runtime with a fixed-shape compile (OpenVINO) also compiles each file
with its input shape fixed per batch size (`<precision> static`: the same file, as a user who knows
the batch deploys it), and that compiled model is checked, scored and timed as a candidate of its
own. The baseline is timed in the same group, so each candidate's speed-up is a ratio measured side
by side, and a candidate slower than the baseline at a batch size says so.
results.json: `export` (every file's figures) and `deploy` (every candidate with its own validation
and test accuracy, the baseline's latency, and the fastest at batch 1 and at batch 64)."""

import logging
from pathlib import Path

from compressor import measure, runtimes
from compressor.quant.ops import calibration_inputs

log = logging.getLogger(__name__)
# agreement with PyTorch's top-1 an export must reach to be shipped: a check that the export is not
# broken, not an accuracy bar (each file's own validation accuracy is what a budget judges); why int8's
# is 95%: docs/techniques.md
NEEDED = {"fp32": 0.995, "int8": 0.95}


def _files(runtime, reference, example, run_dir: Path, calibration, threads, written: bool) -> dict:
    """A runtime's files of the float model, fp32 and (with calibration batches) int8, ready to run;
    with a fixed-shape compile of each where the runtime has one. written: this run's quant backend
    wrote them already (technique.backend=<runtime>)."""
    paths = {"fp32": run_dir / runtime.FILES["fp32"]}
    if not written:
        runtime.export(reference, example, paths["fp32"])
    if calibration is not None:
        paths["int8"] = run_dir / runtime.FILES["int8"]
        if not written:
            runtime.int8(reference, example, calibration, paths["fp32"], paths["int8"])
    out = {name: runtime.load(path, threads) for name, path in paths.items()}
    if runtime.STATIC:
        out.update({f"{name} static": runtime.load(path, threads, static=True) for name, path in paths.items()})
    return out


def wanted(cfg, model) -> bool:
    return bool(runtimes.selected(cfg.export)) or runtimes.of(model) != "torch"


def measured(
    model,
    model_path: Path,
    float_model,
    dm,
    example,
    run_dir: Path,
    cfg,
    precision: str = "fp32",
    calibration_batches: int = 32,
    accuracy: float | None = None,
    val_accuracy: float | None = None,
    baseline=None,
    correct: dict | None = None,
) -> dict:
    """results.json's `export` and `deploy` blocks. An export that fails is one warning line and an
    `error` entry; the run keeps everything else. `baseline` (a float torch model) is timed with the
    files. `correct` gains each shippable file's answers per split, image by image, under its label
    (the run's own model is `model`, given)."""
    correct = {} if correct is None else correct
    reference = float_model if float_model is not None else model  # an int8-backend run always has one
    tested = cfg.export.get("test", True)  # false (a search's trials): validation only, the agreement on it too
    split = "test" if tested else "val"
    checked = dm.test_dataloader() if tested else dm.val_dataloader()
    ref_logits, _ = measure.predict(reference, checked)
    # `precision`: the run's number format (int8: the int8 exports are made too, calibrated like its stage)
    calibration = list(calibration_inputs(dm.train_dataloader(), calibration_batches)) if precision == "int8" else None
    mine = runtimes.of(model)  # torch, or the run's quant backend
    own = f"{mine} (the run's model)"
    files = {own: (mine, model, Path(model_path))}  # label -> (runtime, runnable, file)
    accuracies = {own: (val_accuracy, accuracy)}  # each shipped file's own: an int8 export is not the run's model
    precisions = {own: precision}
    shippable, out = [own], {}
    names = runtimes.selected(cfg.export)
    for name in names + ([mine] if mine not in ("torch", *names) else []):
        try:  # a backend run always checks its own files
            sessions = _files(
                runtimes.get(name),
                reference,
                example,
                run_dir,
                calibration,
                cfg.latency.threads,
                name == mine,
            )
        except Exception as exc:  # one runtime failing to take a model must not lose the run
            first = str(exc).splitlines()[0] if str(exc) else ""
            log.warning("export to %s failed (%s: %s); the run keeps its other files", name, type(exc).__name__, first)
            out[name] = {"error": f"{type(exc).__name__}: {first}"[:500]}
            continue
        out[name] = {}
        for kind, session in sessions.items():  # kind: fp32 | int8, + " static" for a fixed input shape
            number = kind.split()[0]
            logits, labels = measure.predict(session, checked)
            answers = {split: measure.correct(logits, labels)}
            agreement = (logits.argmax(1) == ref_logits.argmax(1)).float().mean().item()
            if agreement < NEEDED[number]:
                log.warning(
                    "%s %s agrees with PyTorch on only %.2f%% of %s images (needed %.1f%%)",
                    name,
                    kind,
                    100 * agreement,
                    split,
                    100 * NEEDED[number],
                )
            out[name][kind] = {
                "path": str(session.path),
                "size_mb": measure.size_mb(session.path),
                f"{split}/acc": measure.accuracy(logits, labels),
                "agreement": agreement,
                "agreement_on": split,
                "agreement_ok": agreement >= NEEDED[number],
            }
            computes_in = session.computes_in()  # e.g. OpenVINO: f32 (not its own bf16 pick), its int8 ops
            if computes_in is not None:
                out[name][kind]["computes_in"] = computes_in
            if number != precision:
                out[name][kind]["note"] = f"the float model before quantization, not this run's {precision} model"
            if Path(session.path) == Path(model_path) and kind == number:  # the run's own backend file, as it ran
                out[name][kind]["same_as"] = own
                continue
            files[f"{name} {kind}"] = (name, session, Path(session.path))
            if agreement >= NEEDED[number]:
                shippable.append(f"{name} {kind}")
                precisions[f"{name} {kind}"] = number
                if tested:
                    answers["val"] = measure.correct(*measure.predict(session, dm.val_dataloader()))
                val = answers["val"].float().mean().item()
                accuracies[f"{name} {kind}"] = (val, out[name][kind].get("test/acc"))  # test: None untested
                correct[f"{name} {kind}"] = {"val": answers["val"], "test": answers.get("test")}
    if float_model is not None:  # the float PyTorch model the int8 files came from, timed with them
        files["torch fp32"] = ("torch", float_model, None)
        out["torch"] = {"fp32": {"note": f"the float model before quantization, not this run's {precision} model"}}
    if baseline is not None:
        files["baseline"] = ("torch", baseline, None)
    # every file side by side in one process, threads pinned (measure.latencies alternates them)
    speeds = measure.latencies(
        {label: f[1] for label, f in files.items()}, example, cfg.latency.threads, cfg.latency.reps, cfg.latency.rounds
    )
    for name, kinds in out.items():
        for kind, entry in kinds.items() if "error" not in kinds else ():
            entry.update(speeds[entry.get("same_as", f"{name} {kind}")])
    deploy = {
        "candidates": [
            {
                "label": label,
                "runtime": files[label][0],
                "precision": precisions[label],
                "static_shape": bool(getattr(files[label][1], "static", False)),
                "file": files[label][2].name,
                "size_mb": measure.size_mb(files[label][2]),
                "val/acc": accuracies[label][0],
                "test/acc": accuracies[label][1],
                **speeds[label],
            }
            for label in shippable
        ]
    }
    if baseline is not None:
        deploy["baseline"] = speeds["baseline"]
        for c in deploy["candidates"]:
            slower = [b for b in ("b1", "b64") if c[f"latency/{b}_ms"] > speeds["baseline"][f"latency/{b}_ms"]]
            if slower:
                c["slower_than_baseline"] = slower
    for batch in ("b1", "b64"):
        best = min(deploy["candidates"], key=lambda c: c[f"latency/{batch}_ms"])
        deploy[batch] = {
            "runtime": best["runtime"],
            "file": best["file"],
            "static_shape": best["static_shape"],
            "test/acc": best["test/acc"],
            f"latency/{batch}_ms": best[f"latency/{batch}_ms"],
            "slower_than_baseline": batch in best.get("slower_than_baseline", ()),
        }
    return {"export": out, "deploy": deploy}


def example(run_dir: Path):
    """One input of the shape a run's model takes (its resolved config.yaml's dataset)."""
    from omegaconf import OmegaConf

    from compressor.data.base import example_input

    d = OmegaConf.load(Path(run_dir) / "config.yaml").dataset
    return example_input(d.in_channels, d.image_size, 1)


def open_file(runtime: str, path, static: bool = False, threads: int = 1, trust: bool = False, targets=()):
    """The one way a model file is opened to run: a torch file through compressor.storage.checkpoint
    (pickle only with `trust`; `targets`: module prefixes its architecture may name), any other
    through its runtime's `load`."""
    if runtime == "torch":
        from compressor.storage import checkpoint

        return checkpoint.load(path, "model file", trust=trust, targets=targets, hint="--allow-target PREFIX")
    return runtimes.get(runtime).load(path, threads, static)


def load(candidate: dict):
    """A candidate file (an entry of results.json's deploy.candidates, with its path) ready to run."""
    return open_file(candidate["runtime"], candidate["path"], static=candidate.get("static_shape", False))
