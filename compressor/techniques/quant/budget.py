"""How an accuracy budget searches technique=quant's recipe (compressor/budget.py calls these
through Quant.search):
- static int8 on torch (`search`): int8 everywhere; while validation accuracy is under the floor,
  the layer whose return to float helps most (ranked by the int8-all-but-this-layer scan, scan.py)
  goes back to float, one at a time, re-measured after each (OpenVINO's AccuracyAware idea).
- static on a runtime with an accuracy control of its own (`runtime`; OpenVINO's is NNCF's
  quantize_with_accuracy_control): the same idea, done by that runtime, with max_drop in the same
  points (absolute), measured on the same validation loader."""

import logging

from compressor import measure
from compressor.quant.ops import calibration_inputs
from compressor.techniques.quant.scan import int8, quant_layers, quant_scan

log = logging.getLogger("compressor")


def search(budget, stage, model, floor: float) -> dict:
    """The layers a static-int8 stage keeps float: none, or the most harmful until the floor holds."""
    calibration = list(calibration_inputs(budget.dm.train_dataloader(), stage.node.calibration_batches))
    val, api = budget.selection(), stage.node.get("api", "fx")
    full = measure.accuracy_of(int8(model, budget.shape, calibration, api=api), val)
    tried, rows, why = [{"keep_float": [], "val/acc": full}], [], {}
    if not budget.within(full, floor):
        layers = quant_layers(model, [n for n, _ in model.named_modules()])
        rows = quant_scan(model, val, calibration, layers, budget.shape, api)
        gain = {r["layer"]: r["val/acc"] - full for r in rows if r["method"] == "int8_all_but"}
        alone = {r["layer"]: r["drop"] for r in rows if r["method"] == "int8_only"}
        # most harmful first: float helps most when all else is int8; ties: costs most when int8 alone
        for rank, name in enumerate(sorted(layers, key=lambda n: (-gain[n], -alone[n])), 1):
            kept = tried[-1]["keep_float"] + [name]
            tried.append(
                {
                    "keep_float": kept,
                    "val/acc": measure.accuracy_of(int8(model, budget.shape, calibration, kept, api=api), val),
                }
            )
            why[name] = (
                f"int8 everywhere scored {full:.4f} on validation, under the floor {floor:.4f}; harm rank "
                f"{rank}: float alone gains {100 * gain[name]:.2f} pts, int8 alone costs {alone[name]:.2f}"
            )
            if budget.within(tried[-1]["val/acc"], floor):
                break
    within = [s for s in tried if budget.within(s["val/acc"], floor)]
    best = within[0] if within else max(tried, key=lambda s: s["val/acc"])
    if not within:
        log.warning(
            "budget: static int8 stays under validation accuracy %.4f (budget %g pts) even with layers "
            "kept float; keeping the best attempt, over budget",
            floor,
            budget.max_drop,
        )
    kept = list(best["keep_float"])
    return {
        "keep_float": kept,
        "why": {n: why[n] for n in kept},
        "over_budget": not within,
        "steps": tried,
        "sensitivity": rows,
    }


def runtime(budget, model, floor: float, within: str) -> dict:
    """A runtime's own accuracy control (its WITHIN: NNCF's quantize_with_accuracy_control for
    OpenVINO) does the same search inside its int8: int8 everywhere, then the layers that cost most
    back to float until the validation drop from this stage's input is within what the stage may use."""
    allowed = 100 * (budget.val_acc(model) - floor)
    return {"accuracy_control": within, "max_drop_pts": max(0.0, allowed)}
