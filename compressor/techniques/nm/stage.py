"""technique=nm: keep the n largest of every m consecutive input weights (callback.py: NMSparsity),
then fine-tune with that pattern fixed."""

from compressor.techniques.base import CallbackStage
from compressor.techniques.nm import settings as spec


class NM(CallbackStage):
    settings = spec.NM
    joined = staticmethod(spec.check)
    callback_class = "compressor.techniques.nm.callback.NMSparsity"

    def label(self, cfg) -> str:
        return f"nm {self.node.n}:{self.node.m}"
