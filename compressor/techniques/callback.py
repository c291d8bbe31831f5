"""The hooks a technique's Lightning callback provides, declared once. The stage
(base.CallbackStage) and the fit (compressor/training/fit.py) call them; nothing looks them up by
name. A callback of your own subclasses TechniqueCallback and overrides what it needs."""

import lightning as L


class TechniqueCallback(L.Callback):
    """A technique's callback on a fine-tune fit (prune, quant, cluster, nm, sensitivity)."""

    compressed = None  # the model to keep after the fit (an int8 model, a runtime's file); None: the fit's own
    needs: tuple = ()  # what the run tells it besides its settings: of example_shape, seed, workdir
    resumable = True  # False while it changes the model's structure between epochs: a rerun starts the fit over

    def settings(self) -> dict:
        """Its settings' current values (those `compressor.settings.assign` gave it)."""
        return {key: getattr(self, key) for key in getattr(self, "_settings", ())}

    def check(self, model) -> None:
        """Refuse a model it cannot act on with one ConfigError line, before any training."""

    def settled(self, epoch: int, max_epochs: int) -> bool:
        """Whether the model's structure and masks are final from `epoch` on: recovery keeps a best
        epoch only among settled ones (compressor/training/recovery.py)."""
        return True

    def summary(self) -> dict:
        """What it did, for the stage's record in results.json."""
        return {}
