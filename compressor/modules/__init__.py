from compressor.modules.classifier import Classifier
from compressor.modules.distiller import Distiller

__all__ = ["Classifier", "Distiller"]
