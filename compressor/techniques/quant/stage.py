"""technique=quant: int8 (dynamic, static, QAT) or fp16/bf16 on torch, ONNX Runtime or OpenVINO
(compressor.callbacks.Quantization). The top half is the stage's schema, torch-free: `RULES`
and `check` are the one place its rules live (the callback checks its arguments with them)."""
import copy

from compressor import choices, rules
from compressor.errors import ConfigError
from compressor.stages.base import CallbackStage

RULES = {"mode": rules.choice(choices.QUANT_MODES), "backend": rules.choice(choices.QUANT_BACKENDS),
         "api": rules.choice(choices.QUANT_APIS),
         "calibration_batches": rules.integer(1), "keep_float": rules.strings()}


GRAPH_INT8 = (("torch", "static"), ("torch", "qat"))  # (backend, mode) built by an int8 API (fx or pt2e)


def check(values: dict, prefix: str = "technique.") -> None:
    rules.apply(values, RULES, prefix)
    mode, backend = values.get("mode", "static"), values.get("backend", "torch")
    if backend == "onnxruntime" and mode not in ("dynamic", "static"):
        raise ConfigError(f"{prefix}mode={mode!r} with {prefix}backend=onnxruntime: choose dynamic or static")
    if backend == "openvino" and mode != "static":
        raise ConfigError(f"{prefix}mode={mode!r} with {prefix}backend=openvino: choose static (NNCF PTQ)")
    if values.get("api", "fx") != "fx" and (backend, mode) not in GRAPH_INT8:
        raise ConfigError(f"{prefix}api={values['api']} with mode={mode} backend={backend}: the int8 API is chosen "
                          "for mode=static or qat with backend=torch")
    if values.get("keep_float") and (backend, mode) not in GRAPH_INT8:
        raise ConfigError(f"{prefix}keep_float with mode={mode} backend={backend}: layers can be kept float "
                          "for mode=static or qat with backend=torch")


class Quant(CallbackStage):
    rules = RULES

    @classmethod
    def validate(cls, prefix, node):
        super().validate(prefix, node)
        check({k: rules.value(node, k) for k in RULES if k in node}, prefix)

    @classmethod
    def may_recover(cls, prefix, node):
        if node.mode != "qat":
            raise ConfigError(f"{prefix}recover=kd with {prefix}mode={node.mode}: only stages that fine-tune "
                              "recover; choose mode=qat, or recover=none")

    def fine_tunes(self) -> bool:
        """Only QAT trains; post-training modes run a zero-epoch fit (calibrate, convert)."""
        return self.node.mode == "qat"

    def label(self, cfg) -> str:
        searched = self.searchable() and cfg.budget.max_drop is not None
        tail = f" within {cfg.budget.max_drop:g} pts" if searched else " keep float" if self.node.get("keep_float") else ""
        return f"quant {self.node.mode} {self.node.backend}{tail}"

    def precision(self) -> str:
        return self.node.mode if self.node.mode in ("fp16", "bf16") else "int8"

    def trainer_args(self) -> dict:
        """Fake quantization has no half-precision kernels: QAT (and the zero-epoch PTQ fits) run in
        fp32 whatever the trainer's precision (trainer=gpu's 16-mixed failed on CUDA)."""
        return {"precision": "32-true"}

    def before(self, model, ctx) -> None:
        ctx.float_model = copy.deepcopy(model)  # what the artifact rebuilds int8 from, and the exports start from

    # -- the budget: layers returned to float ----------------------------------------------------
    def searchable(self) -> bool:
        node = self.node
        return node.mode == "static" and node.backend in ("torch", "openvino") and not node.get("keep_float")

    def search(self, budget, model, floor: float) -> dict:
        from compressor.search import budget as strategies

        if self.node.backend == "openvino":
            record = strategies.openvino(budget, model, floor)
            self.overrides["accuracy_control"] = (budget.dm.val_dataloader(), record["max_drop_pts"])
        else:
            record = strategies.quant(budget, self, model, floor)
            self.overrides["keep_float"] = record["keep_float"]
        return record
