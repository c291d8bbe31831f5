"""Quantization as one Lightning callback.

`setup` prepares the model (observers for static PTQ, fake quantization for QAT), `on_fit_start`
calibrates static PTQ on `calibration_batches` training batches, `on_fit_end` converts. PTQ
modes run with 0 fine-tune epochs; QAT fine-tunes with fake quantization in the loop.

backend=torch, by mode:
dynamic   torchao Int8DynamicActivationInt8Weight (Linear)
static    int8, per-channel, fused: api=fx torch.ao FX (compressor/quant/fx.py), api=pt2e torchao (compressor/quant/pt2e.py)
qat       FX or pt2e QAT, then int8 convert
fp16/bf16 cast of weights and inputs
The converted model is left in `self.compressed`. backend=<a runtime> (compressor/runtimes: its MODES
say which modes it runs) writes that runtime's fp32 file and its own int8 of it into the run
directory, and `self.compressed` is the int8 file, ready to run."""

import copy
import logging

import torch
from torch import nn

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.quant.ops import Cast, calibration_inputs, torchao_dynamic
from compressor.techniques.callback import TechniqueCallback
from compressor.techniques.layers import weighted
from compressor.techniques.quant import settings as spec
from compressor.techniques.shared import FIT

log = logging.getLogger(__name__)


class Quantization(TechniqueCallback):
    """`settings`: the keys of settings.Quant (mode, backend, api, ...), each checked against its
    rule there; those not given keep the defaults declared there. `accuracy_control`: under an
    accuracy budget, a runtime backend with an accuracy control of its own (its WITHIN) gets
    (validation loader, max_drop points), chosen by the budget."""

    needs = ("example_shape", "workdir")

    def __init__(self, example_shape=None, workdir: str = ".", accuracy_control=None, **settings):
        values = s.make(spec.Quant, settings, leave_out=FIT)
        spec.check(values)
        if values["backend"] != "torch":
            from compressor import runtimes

            self.runtime = runtimes.get(values["backend"])
            self.runtime.require()  # a missing extra is one line before any training
        s.assign(self, values)  # keep_float: layers left float on purpose (by hand, or by the accuracy budget)
        self.example_shape, self.workdir, self.accuracy_control = example_shape, workdir, accuracy_control
        self.compressed = None
        self.float_layers: list[str] = []

    def check(self, model: nn.Module) -> None:
        layers = list(weighted(model))
        unknown = sorted(set(self.keep_float) - set(layers))
        if unknown:
            raise ConfigError(
                f"technique.keep_float names {unknown}, not Conv2d/Linear layers; layers: {', '.join(layers)}"
            )

    def _example(self):
        return torch.randn(*self.example_shape)

    def _calibration(self, trainer):
        return calibration_inputs(trainer.datamodule.train_dataloader(), self.calibration_batches)

    # -- Lightning hooks --------------------------------------------------------------
    def setup(self, trainer, pl_module, stage):
        if stage != "fit" or self.backend != "torch":
            return
        from compressor.quant import engine

        int8 = engine(self.api)
        if self.mode == "static":
            pl_module.model = int8.prepare_static(pl_module.model.cpu(), self._example(), self.keep_float)
        elif self.mode == "qat":
            pl_module.model = int8.prepare_qat(pl_module.model, self._example().to(pl_module.device), self.keep_float)

    @torch.no_grad()
    def on_fit_start(self, trainer, pl_module):
        if self.backend == "torch" and self.mode == "static":  # int8 observers run on the CPU: the
            pl_module.model.cpu().eval()  # trainer has just moved the model to its device (a GPU)
            for x in self._calibration(trainer):
                pl_module.model(x.cpu())

    def on_fit_end(self, trainer, pl_module):
        model = pl_module.model.cpu().eval()
        if self.backend != "torch":
            if trainer.global_rank != 0:  # DDP: one rank writes the files into the shared run dir
                return
            self.compressed = self._runtime(model, trainer)
        else:  # torch: the mode's own function (MODES)
            self.compressed = MODES[self.mode](self, model)
        if self.float_layers and not self.keep_float:
            log.warning("quantization (%s): these layers stay float: %s", self.mode, ", ".join(self.float_layers))

    def _int8(self, model: nn.Module) -> nn.Module:
        """static and qat: the observed (static) or fake-quantized (qat) model converted to int8."""
        from compressor.quant import engine

        int8 = engine(self.api)
        out = int8.mark(int8.convert(model), self.mode, self.example_shape, self.keep_float)
        self.float_layers = int8.float_layers(out)
        return out

    def _torchao_dynamic(self, model: nn.Module) -> nn.Module:
        self.float_layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        return torchao_dynamic(copy.deepcopy(model))

    def _runtime(self, model: nn.Module, trainer):
        """The backend runtime's own files: its fp32 export, then its int8 of it (compressor/runtimes)."""
        rt, example = self.runtime, self._example()
        calibration = list(self._calibration(trainer)) if self.mode == "static" else None
        fp32 = rt.export(model, example, f"{self.workdir}/{rt.FILES['fp32']}")
        path = rt.int8(
            model, example, calibration, fp32, f"{self.workdir}/{rt.FILES['int8']}", self.mode, self.accuracy_control
        )
        return rt.load(path)

    def summary(self) -> dict:
        return {
            "mode": self.mode,
            "backend": self.backend,
            "api": self.api,
            "calibration_batches": self.calibration_batches,
            "float_layers": self.float_layers,
            "keep_float": self.keep_float,
        }


# technique.mode on the torch backend -> what the fit's end makes of the model (settings.py lists the modes)
MODES = {
    "static": Quantization._int8,
    "qat": Quantization._int8,
    "dynamic": Quantization._torchao_dynamic,
    "fp16": lambda self, model: Cast(copy.deepcopy(model), torch.float16),
    "bf16": lambda self, model: Cast(copy.deepcopy(model), torch.bfloat16),
}
