"""DDP: what every rank decides alike, how long a rank waits for the others, and what the launching
process does before and after each job of a Hydra multirun.

Everything that picks a folder, a lock or a skip is derived from the trainer's config, which every
rank holds alike, never from environment variables: each launcher (Lightning's subprocess launcher,
SLURM's tasks, torchrun) sets those at another moment, and ranks that read WORLD_SIZE disagreed on a
stage's folder, so one waited on its lock while the other waited in the fit's first collective,
forever (issue 54)."""

import hashlib
import os
import shlex
import sys
from datetime import timedelta

import torch

ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def processes(trainer) -> int:
    """How many processes fit together under this trainer config: devices per node x num_nodes."""
    if str(trainer.get("strategy", "auto")) in ("single_device", "dp"):
        return 1
    devices = trainer.get("devices", 1)
    if isinstance(devices, str):  # "auto", "2", "0,1"
        devices = devices.strip()
        devices = (
            -1
            if devices == "auto"
            else [d for d in devices.split(",") if d.strip()]
            if "," in devices
            else int(devices)
        )
    if devices == -1:  # every device there is: the GPUs where CUDA is, else one CPU process (Lightning's)
        gpus = str(trainer.get("accelerator", "cpu")) in ("gpu", "cuda", "auto") and torch.cuda.is_available()
        devices = torch.cuda.device_count() if gpus else 1
    per_node = devices if isinstance(devices, int) else len(devices)  # a list of device indices
    return max(1, per_node) * max(1, int(trainer.get("num_nodes") or 1))


def distributed(cfg) -> bool:
    """Whether this job fits with several processes (each of them reads the same answer)."""
    return processes(cfg.trainer) > 1


def timeout_s(cfg) -> float:
    """How long a rank waits for the others (a collective, the fit's start) or for a lock: ddp.timeout_s."""
    return float(cfg.ddp.timeout_s)


def strategy(cfg) -> dict:
    """The Trainer's `strategy` argument with ddp.timeout_s as its process group's timeout (torch's own
    is 30 minutes): a Lightning strategy name of the DDP family, or `auto` across several processes,
    becomes that strategy's object. Anything else (an object the config builds) is left as it is."""
    from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

    name = cfg.trainer.get("strategy", "auto")
    if not distributed(cfg) or not isinstance(name, str):
        return {}
    name = "ddp" if name == "auto" else name
    entry = StrategyRegistry[name] if name in StrategyRegistry else None
    if entry is None or not issubclass(entry["strategy"], DDPStrategy):
        return {}
    return {"strategy": entry["strategy"](**{**entry["init_params"], "timeout": timedelta(seconds=timeout_s(cfg))})}


def continue_command() -> str:
    """The command that runs this job again (for a job of a sweep: that job alone)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return shlex.join(["python", sys.argv[0], *HydraConfig.get().overrides.task])
    return shlex.join(["python", *sys.argv])


def gave_up_waiting(exc: BaseException) -> bool:
    """torch.distributed's errors for a rank that waited past its timeout, or whose peer is gone."""
    if isinstance(exc, getattr(torch.distributed, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("timed out", "connection closed by peer", "connection reset by peer")
    )


def children_run_this_job_only() -> None:
    """Lightning's DDP launcher restarts this script for ranks > 0 with sys.argv and Hydra's run
    dir. Under a multirun that would start the whole sweep again in every rank
    (lightning-hydra-template #393), so the children get this job's overrides and output dir."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        sys.argv = [sys.argv[0], *hc.overrides.task]
        with read_write(hc):
            hc.run.dir = hc.runtime.output_dir


def environment() -> dict:
    return {k: os.environ.get(k) for k in ENV}


def teardown(env_before: dict) -> None:
    """After a job whose ranks this process launched: end the process group and forget the
    launcher's variables, so the next job of a multirun launches its own ranks."""
    if env_before.get("LOCAL_RANK") is not None or os.environ.get("LOCAL_RANK") is None:
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in env_before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def digest(module, parameters_only: bool = False) -> str:
    """sha256 of a module's parameters and buffers (or parameters only), in order (12 hex digits). A
    quantized model's state also holds int8 tensors (their integers count) and schemes (their names)."""
    h = hashlib.sha256()
    state = dict(module.named_parameters()) if parameters_only else module.state_dict()
    for key, value in state.items():
        h.update(key.encode())
        if not isinstance(value, torch.Tensor):
            h.update(repr(value).encode())
            continue
        tensor = value.detach().cpu()
        tensor = tensor.int_repr() if tensor.is_quantized else tensor
        h.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]
