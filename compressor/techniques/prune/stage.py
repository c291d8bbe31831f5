"""technique=prune: magnitude, random or channel pruning, then fine-tuning (callback.py: Pruning).
Its settings: settings.py; its accuracy-budget search: budget.py."""

from compressor.techniques.base import CallbackStage
from compressor.techniques.dimension import Dimension
from compressor.techniques.prune import settings as spec


def amounts(search, model, conf) -> list[str]:
    """A search point's pruning: channels or weights, by each of search.channel and search.unstructured."""
    return [*(f"channel {a:g}" for a in search.channel), *(f"unstructured {a:g}" for a in search.unstructured)]


def point(value: str) -> dict:
    """A search point's pruning as the stage's settings (`channel 0.5` -> method and amount)."""
    method, amount = value.split()
    return {"method": "channel" if method == "channel" else "l1_unstructured", "amount": amount}


class Prune(CallbackStage):
    settings = spec.Prune
    joined = staticmethod(spec.check)
    callback_class = "compressor.techniques.prune.callback.Pruning"
    dimension = Dimension("prune", "none", amounts, point, label=lambda v: f"prune {v}", shortened=True)

    @classmethod
    def validate(cls, prefix: str, node) -> None:
        """The settings' rules, then a null scope written as the one it means for the method, so a job's
        key says which ranking ran (unstructured keeps the key it had when global was the default)."""
        super().validate(prefix, node)
        if node.get("scope", None) is None and "method" in node:
            node.scope = spec.scope_of(node.method, None)

    def label(self, cfg) -> str:
        node = self.node
        if node.get("speedup") is not None:
            return f"prune {node.method} per-layer {node.speedup:g}x by {node.cost}"
        if self.searchable() and cfg.budget.max_drop is not None or node.get("amounts"):
            within = (
                f" within {cfg.budget.max_drop:g} pts" if self.searchable() and cfg.budget.max_drop is not None else ""
            )
            return f"prune {node.method} per-layer{within}"
        return f"prune {node.method} {node.scope} {node.schedule} {node.amount:g}"

    def apply(self, model, ctx):
        """With `speedup`: the per-layer amounts that reach it (target.py), then the fine-tune with them."""
        if self.node.get("speedup") is None or "amounts" in self.overrides:
            return super().apply(model, ctx)
        from compressor.techniques.prune import target

        found = target.chosen(self.node, model, ctx)
        self.overrides.update(amounts=found["amounts"], speedup=None)
        out, record = super().apply(model, ctx)
        record["speedup"] = found
        return out, record

    def after(self, model, record: dict) -> None:
        from compressor import measure

        record["layer_sparsity"] = measure.layer_sparsity(model)

    # -- the budget: per-layer amounts (L1 or channels) ---------------------------------------
    def searchable(self) -> bool:
        return self.node.method in spec.SEARCHED and not self.node.get("amounts") and self.node.get("speedup") is None

    def search(self, budget, model, floor: float) -> dict:
        from compressor.techniques.prune import budget as strategy

        record = strategy.search(budget, self, model, floor)
        self.overrides["amounts"] = record["amounts"]
        return record
