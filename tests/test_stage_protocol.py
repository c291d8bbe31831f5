"""The stage protocol from a user's side: a technique written outside the package (one module and
one config in the user's folder) runs through the command line alone and in a pipeline, with no
edit to compressor; and the import graph that keeps bad input refused before torch loads."""

import ast
import json
import sys
from pathlib import Path

from tests import forked
from tests.conftest import FAST, ROOT, no_exports

STAGE = '''
import torch

from dataclasses import dataclass

from compressor import settings as s
from compressor.techniques.base import Stage


@dataclass
class Settings:
    factor: float = s.setting(1.0, s.number(gt=0), "every weight is multiplied by it")


class Scale(Stage):
    """Every weight times `factor`; no fine-tune."""
    settings = Settings
    trains = False

    def label(self, cfg):
        return f"scale x{self.node.factor:g}"

    def apply(self, model, ctx):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(self.node.factor)
        return model, {"factor": self.node.factor}
'''
TECHNIQUE_YAML = "name: scale\nkind: scale\n_target_: mystage.Scale\nfactor: 1.0\n"


def user_folder(tmp_path: Path) -> Path:
    """A technique of one's own: one module and one config file, nothing else."""
    (tmp_path / "conf" / "technique").mkdir(parents=True)
    (tmp_path / "mystage.py").write_text(STAGE)
    (tmp_path / "conf" / "technique" / "scale.yaml").write_text(TECHNIQUE_YAML)
    return tmp_path


def compressor_cli(args, cwd: Path):
    """The installed `compressor` command (compressor.cli.main), in the user's folder."""
    code = "import sys; from compressor.cli import main; sys.argv[0] = 'compressor'; main()"
    env = {"PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "0", "PATH": "/usr/bin:/bin"}
    return forked.run([sys.executable, "-c", code, *no_exports([*FAST, *args])], cwd, env, timeout=600)


def results(folder: Path, run: str) -> dict:
    return json.loads((folder / "outputs" / run / "results.json").read_text())


def test_a_stage_written_outside_the_package_runs_alone_and_in_a_pipeline(tmp_path):
    folder = user_folder(tmp_path)
    alone = compressor_cli(["technique=scale", "hydra.run.dir=outputs/alone"], folder)
    assert alone.returncode == 0, alone.stderr[-3000:]
    r = results(folder, "alone")
    assert r["run"]["label"] == "scale x1" and r["stages"] == [{"stage": "scale", "factor": 1.0}]
    assert r["test/acc"] == r["baseline"]["test/acc"]  # x1.0 changes no prediction

    piped = compressor_cli(
        [
            "technique=pipeline",
            "+technique@technique.scale=scale",
            "technique.order=[prune,scale]",
            "technique.prune.epochs=1",
            "technique.scale.factor=2.0",
            "hydra.run.dir=outputs/piped",
        ],
        folder,
    )
    assert piped.returncode == 0, piped.stderr[-3000:]
    p = results(folder, "piped")
    assert [s["stage"] for s in p["stages"]] == ["prune", "scale"]
    assert p["run"]["label"].endswith(" + scale x2")

    bad = compressor_cli(["technique=scale", "technique.factor=-1", "hydra.run.dir=outputs/bad"], folder)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and lines == ["error: technique.factor=-1: must be a number > 0"], bad.stderr[-2000:]
    assert not (folder / "outputs" / "bad" / "results.json").exists()


def test_a_stage_config_must_name_a_stage_class(tmp_path):
    import pytest
    from omegaconf import OmegaConf

    from compressor.errors import ConfigError
    from compressor.techniques import base

    for target, message in (
        (None, "technique._target_ is not set"),
        ("no.such.Module", "cannot be imported"),
        ("collections.OrderedDict", "not a subclass of compressor.techniques.base.Stage"),
    ):
        node = OmegaConf.create({"kind": "x", **({"_target_": target} if target else {})})
        with pytest.raises(ConfigError, match=message):
            base.validate(node)


def imports(path: Path) -> set[str]:
    """The compressor modules (and torch) a file imports at its top level, not inside functions."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("compressor") or m.split(".")[0] in ("torch", "lightning")}


def test_the_import_graph_has_no_cycle_and_the_checks_load_no_torch():
    package = ROOT / "compressor"
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in package.rglob("*.py")
    }
    graph = {m: {i for i in imports(p) if i in modules and i != m} for m, p in modules.items()}

    def cycle_from(start, seen=()):
        for nxt in graph[start]:
            if nxt in seen:
                return [*seen, nxt]
            found = cycle_from(nxt, (*seen, nxt))
            if found:
                return found
        return None

    for m in graph:
        assert cycle_from(m, (m,)) is None, cycle_from(m, (m,))
    # what runs before torch loads: the settings, validation, and every stage's settings class
    light = [
        "compressor.settings",
        "compressor.validate",
        "compressor.choices",
        "compressor.errors",
        "compressor.results",
        "compressor.techniques.base",
        *(
            m
            for m in modules
            if m.startswith("compressor.techniques.") and m.rsplit(".", 1)[1] in ("settings", "stage")
        ),
    ]
    assert len(light) >= 5 + 1 + 2 * 6  # every technique's settings and stage
    for m in light:
        stack, seen = [m], set()
        while stack:
            cur = stack.pop()
            heavy = {i for i in imports(modules[cur]) if i.split(".")[0] in ("torch", "lightning")}
            assert not heavy, f"{cur} (imported by {m}) imports {heavy} at its top level"
            stack += [i for i in graph[cur] if i not in seen]
            seen |= graph[cur]


def every_import(path: Path, modules: set, package: str) -> set[str]:
    """The compressor modules a file imports anywhere in it, inside functions too: `from a import b`
    is a.b where that is a module, else a."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name.startswith(package):
                out.add(name)
    return out


def test_no_import_cycle_counting_imports_inside_functions():
    """A function-local import is still an inversion: the layers point one way, however far apart."""
    paths = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "compressor").rglob("*.py")
    }
    graph = {m: every_import(p, set(paths), "compressor") - {m} for m, p in paths.items()}
    assert (
        graph["compressor.techniques.prune.stage"] and graph["compressor.search.launch"]
    )  # the walk sees local imports
    state, path = {}, []

    def visit(m):  # depth-first; a module met again while still on the path closes a cycle
        state[m] = "open"
        path.append(m)
        for nxt in sorted(graph[m]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def wrong_imports(paths, upper) -> list[str]:
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            out += [f"{path.relative_to(ROOT)} imports {n}" for n in names if n.startswith(upper)]
    return out


def test_layers_point_one_way():
    """Layers point down, not even a function-local import up: the primitives (quant, storage,
    runtimes, training) import no technique, search or job, so the file format and the runtimes work
    without any stage; a technique imports neither the budget that calls its hooks, the search, nor
    the job."""
    upper = (
        "compressor.techniques",
        "compressor.budget",
        "compressor.search",
        "compressor.job",
        "compressor.cli",
        "compressor.report",
        "compressor.baseline",
    )
    lower = [p for d in ("quant", "storage", "runtimes", "training") for p in (ROOT / "compressor" / d).rglob("*.py")]
    assert len(lower) >= 12 and wrong_imports(lower, upper) == []
    techniques = list((ROOT / "compressor" / "techniques").rglob("*.py"))
    assert len(techniques) >= 15 and wrong_imports(techniques, upper[1:]) == []


def test_a_pipeline_without_kd_keeps_the_model_and_with_kd_trains_the_student(tmp_path):
    """technique=pipeline names student_of_<teacher> for its kd-first order; prune + sharing of
    "SimpleCNN" came out as a pruned SmallCNN, named only in results.json."""
    from tests.conftest import run_job

    short = ["technique=pipeline", "technique.prune.epochs=1", "technique.kd.epochs=1", "technique.cluster.epochs=1"]
    plain = run_job(tmp_path, [*short, "technique.order=[prune,cluster]"], "plain")
    assert plain["run"]["model"] == "simple_cnn" and plain["baseline"]["model"] == "simple_cnn"
    distilled = run_job(tmp_path, [*short, "technique.order=[kd,prune]"], "distilled")
    assert distilled["run"]["model"] == "small_cnn" and distilled["run"]["teacher"] == "simple_cnn"
    named = run_job(tmp_path, [*short, "technique.order=[prune]", "model=small_cnn"], "named")
    assert named["run"]["model"] == "small_cnn" and named["baseline"]["model"] == "small_cnn"


def test_no_module_is_over_300_lines():
    """Small modules that read top to bottom (issue 56): a module that grows past 300 lines is split
    along what it does, as job.py (saving.py), frontier.py (rungs.py) and report/build.py (plots.py) were."""
    package = Path(__file__).resolve().parents[1] / "compressor"
    long = {
        str(p.relative_to(package)): n for p in package.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300
    }
    assert not long, long
