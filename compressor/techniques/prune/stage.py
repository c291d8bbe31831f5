"""technique=prune: magnitude, random or channel pruning, then fine-tuning (callback.py: Pruning).
Its rules: rules.py; its accuracy-budget search: budget.py."""

from compressor.techniques.base import CallbackStage
from compressor.techniques.prune import rules as spec


class Prune(CallbackStage):
    rules = spec.RULES
    joined = staticmethod(spec.check)
    callback_class = "compressor.techniques.prune.callback.Pruning"

    def label(self, cfg) -> str:
        node = self.node
        if self.searchable() and cfg.budget.max_drop is not None or node.get("amounts"):
            within = (
                f" within {cfg.budget.max_drop:g} pts" if self.searchable() and cfg.budget.max_drop is not None else ""
            )
            return f"prune {node.method} per-layer{within}"
        return f"prune {node.method} {node.scope} {node.schedule} {node.amount:g}"

    def after(self, model, record: dict) -> None:
        from compressor import measure

        record["layer_sparsity"] = measure.layer_sparsity(model)

    # -- the budget: per-layer amounts (L1 or channels) ---------------------------------------
    def searchable(self) -> bool:
        return self.node.method in spec.SEARCHED and not self.node.get("amounts")

    def search(self, budget, model, floor: float) -> dict:
        from compressor.techniques.prune import budget as strategy

        record = strategy.search(budget, self, model, floor)
        self.overrides["amounts"] = record["amounts"]
        return record
