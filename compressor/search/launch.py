"""How a search's trials run: one after another in this process (search.parallel=1), or up to
search.parallel at a time in other processes, through the launcher the search was started with:
`hydra/launcher=slurm` (or `submitit_local`) sends each trial to submitit with that launcher's
settings, as a sweep's jobs would be sent; any other launcher uses joblib's local processes.

A trial is a composed job config (its paths set); what comes back is ("ok", results.json) or
("error", one line), so one trial the model cannot take never ends the search."""

from pathlib import Path

from omegaconf import OmegaConf

from compressor.errors import brief


def trial(job) -> tuple[str, object]:
    """One trial's job (a composed config), checked and run as compressor.run runs one, in whichever
    process runs it; the job layer is below the search, so this imports it, never the package's `run`."""
    from compressor import job as jobs
    from compressor import results, validate

    try:
        validate.values(job)
        jobs.main(job)
        return "ok", results.read(Path(job.paths.run_dir) / "results.json")
    except Exception as exc:  # noqa: BLE001 - the search records it and goes on
        return "error", brief(exc, 500)


def settings() -> dict | None:
    """The launcher this run was started with (hydra/launcher=...), read before a trial composes its
    own config over Hydra's; None outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    return {k: v for k, v in OmegaConf.to_container(launcher, resolve=False).items() if k != "submitit_folder"}


def run(jobs: list, parallel: int, launcher: dict | None, folder: Path, fn=trial) -> list[tuple[str, object]]:
    """Each job's outcome (`fn(job)`), in the order given."""
    if parallel <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    jobs = [resolved(job) for job in jobs]
    if launcher and "submitit" in str(launcher.get("_target_", "")):
        return _submitit(jobs, parallel, launcher, folder, fn)
    from joblib import Parallel, delayed

    return Parallel(n_jobs=min(parallel, len(jobs)), backend="loky")(delayed(fn)(job) for job in jobs)


def resolved(job):
    """A copy with every interpolation resolved here: `${hydra:...}` (the data folder, the run folder)
    resolves only in the process Hydra composed it in, not in a worker."""
    if not OmegaConf.is_config(job):
        return job
    job = job.copy()
    OmegaConf.resolve(job)
    return job


def _submitit(jobs: list, parallel: int, launcher: dict, folder: Path, fn) -> list:
    """The trials as one submitit job array, with the launcher's settings mapped the way
    hydra-submitit-launcher maps them (its common keys as they are, the rest prefixed by the cluster)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    cluster = "local" if launcher["_target_"].endswith("LocalLauncher") else "slurm"
    init = {"folder": str(folder / ".submitit" / "%j")}
    if launcher.get("max_num_timeout") is not None:
        init[f"{cluster}_max_num_timeout"] = launcher["max_num_timeout"]
    executor = submitit.AutoExecutor(cluster=cluster, **init)
    common = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {
        k if k in common else f"{cluster}_{k}": v
        for k, v in launcher.items()
        if k not in ("_target_", "max_num_timeout") and v is not None
    }
    if cluster == "slurm":
        params["slurm_array_parallelism"] = parallel
    executor.update_parameters(**params)
    out = []
    for handle in executor.map_array(fn, jobs):
        try:
            out.append(handle.result())
        except Exception as exc:  # noqa: BLE001 - the job itself died (killed, preempted past its requeues)
            out.append(("error", brief(exc, 500)))
    return out
