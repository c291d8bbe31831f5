"""The config as a job runs it, before anything is built: which model a pipeline compresses, the
models' names in reports, and the Trainer's dry run."""

import copy

from omegaconf import DictConfig, open_dict

from compressor import validate


def prepared(cfg) -> None:
    """The config as the job runs it: which model, the models' names, the Trainer's dry run."""
    chosen_model(cfg)
    name_models(cfg)
    validate.trainer(cfg)


def given_keys() -> set | None:
    """The keys the command line (or compressor.run's overrides) set; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}


def chosen_model(cfg: DictConfig) -> None:
    """technique=pipeline makes the model student_of_<teacher> for its kd-first order; an order
    without kd compresses the model the user named: the teacher's (the baseline) unless `model=` was
    given (`technique.model_without_kd: teacher`). Outside Hydra nothing is known, so nothing changes."""
    if cfg.technique.get("model_without_kd") != "teacher" or "kd" in list(cfg.technique.get("order") or []):
        return
    given = given_keys()
    if given is not None and "model" not in given:
        with open_dict(cfg):
            cfg.model = copy.deepcopy(cfg.teacher)


def name_models(cfg: DictConfig) -> None:
    """A model's `name` labels reports and TensorBoard. With none given, or when the command line
    swapped a group's `net._target_` but not its `name` (which then describes another model), the
    name is the target's class name, never a stale default."""
    given = given_keys() or set()
    with open_dict(cfg):
        for key in ("model", "teacher"):
            stale = f"{key}.net._target_" in given and f"{key}.name" not in given
            if stale or not cfg[key].get("name"):
                cfg[key].name = str(cfg[key].net._target_).rsplit(".", 1)[-1]
