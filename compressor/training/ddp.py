"""DDP inside a Hydra multirun: what the launching process does before and after each job."""
import os
import sys

import torch

ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")



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
