"""The allowed values of the choice keys shared by the job and several techniques, in a module that
imports nothing heavy: a bad value is refused before torch and Lightning load. A technique's own
choices live in its settings.py (compressor/techniques/<name>/settings.py)."""

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")
LOSS_TERMS = ("ce", "kl", "cosine", "feature_mse", "dkd")
RECOVERY = ("none", "kd")  # what a prune or QAT stage fine-tunes against
