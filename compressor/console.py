"""What the console shows: progress bars, one line per stage, one summary line per job, and the
sweep's table at the end. Messages that tell the user nothing they can act on are silenced
here, for the whole run; errors and actionable warnings still reach the console. The one local
filter is fx.rebuild's, for a warning that is expected only while rebuilding a saved model."""

import logging
import warnings

# (message pattern, why it is not actionable)
WARNINGS = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated", "Lightning's own use of a torch internal"),
    (
        r"Found \d+ module\(s\) in eval mode at the start of training",
        "the KD teacher is frozen in eval mode on purpose",
    ),
    # torch.ao FX int8 is deprecated; the path is isolated in compressor/quant/fx.py and docs/techniques.md says so
    (r"torch\.ao\.quantization is deprecated", "see compressor/quant/fx.py"),
    (
        r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation",
        "see compressor/quant/fx.py",
    ),
    (r"Please use quant_min and quant_max to specify the range for observers", "torch.ao's own default qconfig"),
    (r".*does not have many workers", "in-memory data sets need no loader workers"),
    (
        r"The `srun` command is available on your system but is not used",
        "a local run on a machine that has SLURM installed; under SLURM, submitit starts the job with srun",
    ),
    (
        r"Checkpoint directory .* exists and is not empty",
        "a stage's shared folder holds the fit it continues (compressor/prefixes.py)",
    ),
)
# loggers whose INFO lines are boilerplate: device banners, a product tip, "Seed set to", font cache
LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
    "matplotlib.font_manager",
)
# torch's C++-side pytree notice about an Enum that torchao registers at import; "No CUDA runtime is
# found" when NNCF imports torch's extension builder on a CPU machine
ERROR_ONLY = ("torch.utils._pytree", "torch.utils.cpp_extension")


def quiet() -> None:
    from compressor import runtimes  # the runtimes' own boilerplate (compressor/runtimes/__init__.py)

    for pattern, _why in (*WARNINGS, *runtimes.WARNINGS):
        warnings.filterwarnings("ignore", message=pattern)
    for name in (*LOGGERS, *runtimes.LOGGERS):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ERROR_ONLY:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # Hydra's handlers print these once
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
