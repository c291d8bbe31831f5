"""Quantization primitives below both the artifact format and the quant callback: static and QAT
int8 on torch.ao FX (fx.py, the one user of the deprecated API) or on torchao's pt2e (pt2e.py),
the same functions in each, chosen by `engine`; and the shared helpers (ops.py)."""

import logging

log = logging.getLogger(__name__)


def engine(api: str = "fx"):
    """The int8 module for `api` (fx or pt2e). A torch without torch.ao's FX quantization gets
    pt2e, with one warning saying so, rather than failing at import."""
    if api == "fx":
        try:
            from compressor.quant import fx

            return fx
        except ImportError as exc:
            import torch

            log.warning(
                "technique.api=fx: torch %s has no torch.ao.quantization FX (%s): int8 runs on pt2e",
                torch.__version__,
                exc,
            )
    from compressor.quant import pt2e

    return pt2e
