"""technique=prune: magnitude, random or channel pruning, then fine-tuning (compressor.callbacks.Pruning).
Its rules: compressor/stages/prune_rules.py."""
from compressor import rules
from compressor.stages.base import CallbackStage
from compressor.stages.prune_rules import RULES, check


class Prune(CallbackStage):
    rules = RULES

    @classmethod
    def validate(cls, prefix, node):
        super().validate(prefix, node)
        check({k: rules.value(node, k) for k in (*RULES, "epochs") if k in node}, prefix)

    def label(self, cfg) -> str:
        node = self.node
        if self.searchable() and cfg.budget.max_drop is not None or node.get("amounts"):
            within = f" within {cfg.budget.max_drop:g} pts" if self.searchable() and cfg.budget.max_drop is not None else ""
            return f"prune {node.method} per-layer{within}"
        return f"prune {node.method} {node.scope} {node.schedule} {node.amount:g}"

    def after(self, model, record: dict) -> None:
        from compressor import measure

        record["layer_sparsity"] = measure.layer_sparsity(model)

    # -- the budget: per-layer amounts (L1 or channels) ---------------------------------------
    def searchable(self) -> bool:
        return self.node.method in ("l1_unstructured", "channel") and not self.node.get("amounts")

    def search(self, budget, model, floor: float) -> dict:
        from compressor.search import budget as strategies

        record = strategies.prune(budget, self, model, floor)
        self.overrides["amounts"] = record["amounts"]
        return record
