"""technique=quant: int8 (dynamic, static, QAT) or fp16/bf16 on torch, or a runtime's own int8
(technique.backend; compressor/runtimes) (callback.py: Quantization). Its settings: settings.py."""

import copy

from compressor.errors import ConfigError
from compressor.techniques.base import CallbackStage
from compressor.techniques.dimension import Dimension
from compressor.techniques.quant import settings as spec

SEARCHED = {"int8": "static", "fp16": "fp16"}  # a search point's precision -> technique.quant.mode


class Quant(CallbackStage):
    settings = spec.Quant
    joined = staticmethod(spec.check)
    callback_class = "compressor.techniques.quant.callback.Quantization"
    # searched: the precisions of search.precisions it makes (static int8: then every runtime's int8)
    dimension = Dimension(
        "precision",
        "fp32",
        lambda search, model, conf: [p for p in search.precisions if p in SEARCHED],
        lambda v: {"mode": SEARCHED[v]},
        anchor=True,
        choices=tuple(SEARCHED),
        keeps_none=lambda search: "fp32" in search.precisions,
    )

    @classmethod
    def may_recover(cls, prefix, node):
        if not spec.fine_tunes(node.mode):
            raise ConfigError(
                f"{prefix}recover=kd with {prefix}mode={node.mode}: only stages that fine-tune "
                "recover; choose mode=qat, or recover=none"
            )

    def fine_tunes(self) -> bool:
        return spec.fine_tunes(self.node.mode)

    def label(self, cfg) -> str:
        searched = self.searchable() and cfg.budget.max_drop is not None
        tail = (
            f" within {cfg.budget.max_drop:g} pts" if searched else " keep float" if self.node.get("keep_float") else ""
        )
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
        return (
            node.mode == "static" and not node.get("keep_float") and (node.backend == "torch" or bool(self._within()))
        )

    def _within(self) -> str | None:
        """How the backend runtime meets an accuracy budget by itself (its WITHIN), or None."""
        from compressor import runtimes

        return runtimes.get(self.node.backend).WITHIN

    def search(self, budget, model, floor: float) -> dict:
        from compressor.techniques.quant import budget as strategies

        if self.node.backend != "torch":
            record = strategies.runtime(budget, model, floor, self._within())
            self.overrides["accuracy_control"] = (budget.selection(), record["max_drop_pts"])
        else:
            record = strategies.search(budget, self, model, floor)
            self.overrides["keep_float"] = record["keep_float"]
        return record
