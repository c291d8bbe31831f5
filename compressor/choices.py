"""The allowed values of every choice key, in a module that imports nothing heavy: a bad value
is refused before torch and Lightning load. The classes that act on a choice import it from here."""
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step")
PRUNE_METHODS = ("l1_unstructured", "random_unstructured", "channel")
PRUNE_SCOPES = ("global", "layer", "lamp")  # lamp: layer-adaptive magnitude scores (Lee et al. 2021), unstructured L1
PRUNE_SCHEDULES = ("oneshot", "cubic")
QUANT_MODES = ("dynamic", "static", "qat", "fp16", "bf16")
QUANT_BACKENDS = ("torch", "onnxruntime", "openvino")
QUANT_APIS = ("fx", "pt2e")  # static/QAT int8 on backend=torch: torch.ao FX (deprecated) or torchao pt2e
LOSS_TERMS = ("ce", "kl", "cosine", "feature_mse", "dkd")
SCAN_METHODS = ("l1_unstructured", "channel")  # sensitivity scans and budget searches: random has no ranking
PRUNE_IMPORTANCES = ("l1", "group_norm", "taylor")  # channel pruning: Torch-Pruning importance criteria
RECOVERY = ("none", "kd")  # what a prune or QAT stage fine-tunes against
