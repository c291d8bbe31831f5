"""Quantization primitives below both the artifact format and the quant callback: torch.ao FX
int8 (fx.py, the one user of the deprecated API) and the shared helpers (ops.py)."""
