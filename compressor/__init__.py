"""compressor: prune, quantize and distil a model, and measure what each costs and gains.

The command line is `python run.py ...` (or the installed `compressor ...`); in Python, `run`
does one job the same way. Importing this package loads neither torch nor Lightning, so bad
input is still refused in about a second."""


def run(job=(), outputs="outputs", name="run") -> dict:
    """One job in-process, as the command line runs it: `job` is a list of Hydra overrides
    (`["technique=prune", "technique.amount=0.7"]`) or a composed config
    (`compressor.config.compose`). Its files go to `outputs/<name>/` (a config's own paths are
    kept), the cache to `outputs/cache/`. Returns the job's results.json as a dict (with
    `search=default`, the search's search.json: compressor/search/frontier.py). Bad input
    raises compressor.errors.ConfigError (one line) and leaves no file of the job behind."""
    import json
    from pathlib import Path

    from omegaconf import DictConfig

    from compressor import validate
    from compressor.config import compose

    cfg = job if isinstance(job, DictConfig) else compose(list(job), outputs, name)
    validate.values(cfg)  # what the command line checks before torch is imported
    if cfg.get("search") is not None:
        return dispatch(cfg)
    dispatch(cfg)
    return json.loads((Path(cfg.paths.run_dir) / "results.json").read_text())


def dispatch(cfg):
    """Run a checked config: one job (compressor.job), or with `search=default` many jobs and
    one file to ship (compressor.search.frontier, which returns its search.json)."""
    if cfg.get("search") is not None:
        from compressor.search import frontier

        return frontier.main(cfg)
    from compressor import job as jobs

    return jobs.main(cfg)
