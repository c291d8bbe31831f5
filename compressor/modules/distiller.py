"""A student trained against a frozen teacher on a weighted sum of named loss terms."""

import torch
from torch import nn

import compressor.modules.losses as losses
from compressor.modules.classifier import Classifier
from compressor.settings import check_terms
from compressor.techniques.kd.settings import Kd


class Distiller(Classifier):
    """`weights` maps term name -> weight; every term is logged as train/loss_<term>.

    `cosine` compares the taps at `student_hidden`/`teacher_hidden` (a learned linear projection
    when their widths differ); `feature_mse` regresses the student's map at `student_feature`
    onto the teacher's at `teacher_feature` through a learned 1x1-conv regressor."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        example: torch.Tensor,
        weights: dict,
        temperature: float,  # no default here: the config's (technique.temperature, recover_temperature) is the one
        dkd_alpha: float = Kd.dkd_alpha,
        dkd_beta: float = Kd.dkd_beta,
        student_hidden: str = "flatten",
        teacher_hidden: str = "flatten",
        student_feature: str = "features",
        teacher_feature: str = "features",
        **optim,
    ):
        super().__init__(student, **optim)
        check_terms(weights, temperature)
        self.weights = {k: float(v) for k, v in weights.items()}
        self.term_args = {"temperature": temperature, "alpha": dkd_alpha, "beta": dkd_beta}
        self.teacher = teacher.eval().requires_grad_(False)
        self.taps = {}
        if "cosine" in weights:
            self.taps["s_hidden"] = losses.Tap(student, student_hidden, "technique.student_hidden")
            self.taps["t_hidden"] = losses.Tap(teacher, teacher_hidden, "technique.teacher_hidden")
        if "feature_mse" in weights:
            self.taps["s_feature"] = losses.Tap(student, student_feature, "technique.student_feature")
            self.taps["t_feature"] = losses.Tap(teacher, teacher_feature, "technique.teacher_feature")
        self.adapters = nn.ModuleDict(self._adapters(example))

    @torch.no_grad()
    def _adapters(self, example):
        """Build the learned projection / regressor from the shapes one forward pass shows."""
        if not self.taps:
            return {}
        self.teacher(example), self.model.eval()(example)
        self.model.train()
        out = {}
        if "s_hidden" in self.taps:
            s, t = losses.vector(self.taps["s_hidden"].output), losses.vector(self.taps["t_hidden"].output)
            out["hidden"] = nn.Identity() if s.shape[1] == t.shape[1] else nn.Linear(s.shape[1], t.shape[1])
        if "s_feature" in self.taps:
            s, t = self.taps["s_feature"].output, self.taps["t_feature"].output
            if s.dim() == 4 and t.dim() == 4:
                out["feature"] = nn.Sequential(nn.Conv2d(s.shape[1], t.shape[1], 1), nn.AdaptiveAvgPool2d(t.shape[-2:]))
            else:
                out["feature"] = nn.Linear(losses.vector(s).shape[1], losses.vector(t).shape[1])
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher stays in eval mode (BN statistics, dropout) whatever Lightning does
        return self

    def loss_terms(self, s_logits, t_logits, labels) -> dict:
        args = dict(self.term_args)
        if "s_hidden" in self.taps:
            s = losses.vector(self.taps["s_hidden"].output)
            args["s_hidden"] = self.adapters["hidden"](s)
            args["t_hidden"] = losses.vector(self.taps["t_hidden"].output)
        if "s_feature" in self.taps:
            s, t = self.taps["s_feature"].output, self.taps["t_feature"].output
            if s.dim() == 4 and t.dim() == 4:
                args["s_feature"], args["t_feature"] = self.adapters["feature"](s), t
            else:
                args["s_feature"], args["t_feature"] = self.adapters["feature"](losses.vector(s)), losses.vector(t)
        return {
            name: losses.TERMS[name](s_logits=s_logits, t_logits=t_logits, labels=labels, **args)
            for name in self.weights
        }

    def training_step(self, batch, batch_idx):
        x, y, *given = batch  # given: the teacher's logits, computed once (compressor/training/teacher_logits.py)
        if given:
            t_logits = given[0]
        else:
            with torch.no_grad():
                t_logits = self.teacher(x)
        s_logits = self(x)
        terms = self.loss_terms(s_logits, t_logits, y)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_fit_end(self):
        for tap in self.taps.values():
            tap.remove()
