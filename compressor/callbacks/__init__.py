from compressor.callbacks.prune import Pruning
from compressor.callbacks.quant import Quantization

__all__ = ["Pruning", "Quantization"]
