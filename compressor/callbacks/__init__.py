from compressor.callbacks.cluster import Clustering
from compressor.callbacks.prune import Pruning
from compressor.callbacks.quant import Quantization

__all__ = ["Clustering", "Pruning", "Quantization"]
