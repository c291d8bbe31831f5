"""technique=kd: the model (the student) trained against the trained teacher on a weighted sum of
named loss terms (compressor.modules.Distiller). Its settings: settings.py."""

from compressor import settings as s
from compressor.errors import ConfigError
from compressor.techniques.base import Context, Stage, fit_args
from compressor.techniques.dimension import Dimension
from compressor.techniques.kd import settings as spec

# the settings the Distiller takes (the rest are the fit's)
DISTILLER = ("weights", "temperature", "dkd_alpha", "dkd_beta", *(k for tap in spec.TAPS.values() for k in tap[1:]))


def students(search, model: str, conf) -> list[str]:
    """The model configs a search point may distil into: `auto` is student_of_<model> where conf/model has one."""
    out = []
    for name in search.students:
        if name == "auto":
            name = f"student_of_{model}"
            if not (conf / "model" / f"{name}.yaml").is_file():
                continue
        if not (conf / "model" / f"{name}.yaml").is_file():
            raise ConfigError(f"search.students names {name!r}: no conf/model/{name}.yaml")
        out.append(name)
    return out


class Kd(Stage):
    settings = spec.Kd
    uses_teacher = True
    columns = {"kd/agreement": ("kd", "test/agreement", "agreement with teacher")}  # from `report` below
    # searched: distil into one of search.students, or not
    dimension = Dimension(
        "student", "none", students, label=lambda v: f"kd into {v}", model=lambda v, model: v, shortened=True
    )

    @classmethod
    def validate(cls, prefix, node):
        spec.check_loss(prefix, node)
        super().validate(prefix, node)
        s.check_terms(s.value(node, "weights"), node.temperature, f"{prefix}weights")

    def weights(self) -> dict:
        return s.value(self.node, "weights")

    def label(self, cfg) -> str:
        weights, presets = self.weights(), s.value(self.node, "presets") or {}
        loss = (
            self.node.loss
            if weights == presets.get(self.node.loss, {})
            else " + ".join(f"{w:g} {term}" for term, w in weights.items())
        )
        return f"kd {loss} from {cfg.teacher.name}"

    def check(self, model, teacher=None) -> None:
        """Every tap the loss terms read exists in the student and the teacher."""
        from compressor.modules.losses import Tap

        d = self.node
        for term, (_, student_key, teacher_key) in spec.TAPS.items():
            if term in self.weights():
                Tap(model, d[student_key], f"technique.{student_key}").remove()
                Tap(teacher, d[teacher_key], f"technique.{teacher_key}").remove()

    @classmethod
    def summarize(cls, runs, out) -> str:
        """What distillation added: each student against the same student trained alone."""
        from compressor.techniques.kd.report import note

        return note(runs)

    def report(self, logits, reference_logits, reference_metrics: dict) -> dict:
        """The teacher's test accuracy, and how often the student's top-1 agrees with it."""
        return {
            "kd": {
                "teacher/test_acc": reference_metrics["test/acc"],
                "test/agreement": (logits.argmax(1) == reference_logits.argmax(1)).float().mean().item(),
            }
        }

    def apply(self, model, ctx: Context):
        from compressor.data.base import example_input
        from compressor.modules.distiller import Distiller
        from compressor.training import teacher_logits
        from compressor.training.fit import fit, optim_args

        pair = example_input(ctx.shape[1], ctx.shape[-1], 2)
        optim = optim_args(ctx.cfg, self.node.get("lr"), self.node.get("schedule_epochs"))
        module = Distiller(
            student=model,
            teacher=ctx.reference,
            example=pair,
            num_classes=ctx.dm.num_classes,
            **{key: s.value(self.node, key) for key in DISTILLER if key in self.node},
            **optim,
        )
        # the teacher's logits per training image, once for every epoch
        once = self.node.get("teacher_once", False) and teacher_logits.applies(ctx.dm, module.weights)
        data = teacher_logits.riding(ctx.reference, ctx.dm, ctx.checkpoint_dir, self.epochs(ctx)) if once else ctx.dm
        record = fit(ctx.cfg, module, data, ctx.run_dir, ctx.name or self.kind, self.epochs(ctx), **fit_args(self, ctx))
        record["weights"], record["teacher_once"] = dict(module.weights), bool(once)
        return module.model, record
