"""Settings declared once. A technique's settings are a dataclass beside its stage
(compressor/techniques/<name>/settings.py): each field holds its default, and through `setting`
the rule its value must follow and one line of what it means. From that class come the yaml's keys
(conf/technique/<name>.yaml, written by `python -m compressor.settings`; a test keeps them
equal), the check before torch loads (`check`), the callback's arguments (`make`) and the docs'
key table (`table`). A rule is a (test, what is allowed) pair; `apply` runs a table of them (the
job's own keys in compressor/validate.py, the dataset's in compressor/data/rules.py). Nothing here
imports torch."""

import copy
import dataclasses
import sys
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from compressor import choices
from compressor.errors import ConfigError


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(lo=None, hi=None, optional=False):
    text = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
    return (
        lambda v: (optional and v is None) or (_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)),
        text + (" (or null)" if optional else ""),
    )


class Number(tuple):
    """A number rule (test, what is allowed). An integer given for it is the same number as a float:
    `apply` writes it back as a float, so `budget.max_drop=1` and `=1.0` are one job to the index."""


def number(gt=None, ge=None, lt=None, le=None, optional=False):
    bounds = [f"{op} {b}" for op, b in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if b is not None]

    def ok(v):
        if optional and v is None:
            return True
        return (
            _num(v)
            and (gt is None or v > gt)
            and (ge is None or v >= ge)
            and (lt is None or v < lt)
            and (le is None or v <= le)
        )

    return Number((ok, " ".join(["a number", " and ".join(bounds)]).strip() + (" (or null)" if optional else "")))


def boolean():
    return (lambda v: isinstance(v, bool)), "true or false"


def text(optional=False):
    return (lambda v: (optional and v is None) or (isinstance(v, str) and v != "")), "a non-empty string" + (
        " (or null)" if optional else ""
    )


def choice(options):
    options = list(options)
    return (lambda v: v in options), "one of " + ", ".join(map(str, options))


def subset(options):
    options = list(options)
    return (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(x in options for x in v)
    ), "a non-empty list of " + ", ".join(options)


def strings():
    return (lambda v: isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v)), "a list of strings"


def numbers(positive=False):
    return (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(x) and (not positive or x > 0) for x in v),
        "a non-empty list of " + ("positive " if positive else "") + "numbers",
    )


def fractions():
    return (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_num(a) and 0 < a < 1 for a in v),
        "a non-empty list of amounts in (0, 1)",
    )


def amounts():
    return (
        lambda v: v is None or (isinstance(v, dict) and len(v) > 0 and all(_num(a) and 0 <= a < 1 for a in v.values())),
        "null or a mapping {layer name: amount in [0, 1)}",
    )


_ABSENT, _MISSING = object(), object()


def value(node, key, name=None):
    """The value at a dotted key as plain Python; _ABSENT when there is no such key, _MISSING for `???`.
    `name` is the key's full name for the error an unresolvable interpolation gives."""
    try:
        found = OmegaConf.select(node, key, default=_ABSENT, throw_on_missing=True)
    except MissingMandatoryValue:
        return _MISSING
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{name or key}: {' '.join(str(exc).split())[:300]}") from None
    return OmegaConf.to_container(found, resolve=True) if isinstance(found, (DictConfig, ListConfig)) else found


def apply(node, rules: dict, prefix: str = "", required=()) -> None:
    """Raise one ConfigError line for the first key of `node` (a config or a plain dict) that
    breaks its rule; keys absent from `node` pass unless `required`."""
    node = node if isinstance(node, DictConfig) else OmegaConf.create(dict(node))
    for key, (ok, allowed) in rules.items():
        got = value(node, key, f"{prefix}{key}")
        if got is _ABSENT and key not in required:
            continue
        if got is _ABSENT or got is _MISSING:
            raise ConfigError(f"{prefix}{key} is not set: must be {allowed}")
        if not ok(got):
            raise ConfigError(f"{prefix}{key}={got!r}: must be {allowed}")
        if isinstance(rules[key], Number) and _int(got):
            as_float(node, key)


def as_float(node: DictConfig, key: str) -> None:
    """The integer at `key` written back as a float, unless it is an interpolation (its source is checked)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(node, parent_key) if parent_key else node
    if not OmegaConf.is_interpolation(parent, leaf):
        parent[leaf] = float(parent[leaf])


def check_terms(weights: dict, temperature, key: str = "technique.weights") -> None:
    """Distillation: loss terms known, weights non-negative numbers, temperature positive."""
    unknown = set(weights) - set(choices.LOSS_TERMS)
    if unknown:
        raise ConfigError(f"{key} has unknown terms {sorted(unknown)}; choose from {', '.join(choices.LOSS_TERMS)}")
    if not weights:
        raise ConfigError(f"{key} is empty; give at least one of " + ", ".join(choices.LOSS_TERMS))
    bad = {k: v for k, v in weights.items() if not (_num(v) and v >= 0)}
    if bad:
        raise ConfigError(f"{key} has weights {bad}: each must be a number >= 0")
    if not (_num(temperature) and temperature > 0):
        raise ConfigError(f"{key.rsplit('.', 1)[0]}.temperature={temperature!r}: must be a number > 0")


# -- settings declared as dataclass fields --------------------------------------------------------


def setting(default, rule, doc: str = ""):
    """A dataclass field: its default (a list or dict is copied per instance), its rule, its meaning."""
    meta = {"rule": rule, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def ordered(cls) -> list:
    """Its fields, its own first and then those it takes from a settings class it subclasses (in
    that class's order): the yaml and the docs list a technique's own keys at the top."""
    inherited = [f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)]
    own = [f for f in dataclasses.fields(cls) if f.name not in inherited]
    return own + [f for f in dataclasses.fields(cls) if f.name in inherited]


def rules_of(cls) -> dict:
    """{key: rule} of a settings class's fields."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls) if "rule" in f.metadata}


def defaults(cls) -> dict:
    """{key: default} of a settings class, as plain Python."""
    return dataclasses.asdict(cls())


def check(cls, node, prefix: str = "technique.", required=()) -> None:
    """Each key of `node` (a config or a dict of what is set) against its field's rule; one
    ConfigError line names the first that breaks it."""
    apply(node, rules_of(cls), prefix, required)


def make(cls, given: dict, leave_out=(), prefix: str = "technique.") -> dict:
    """Every key of `cls` but those left out (a callback is not given its stage's fit settings),
    from the keys given (a callback's keyword arguments) over the defaults: an unknown key is one
    line listing the known ones, and each given value is checked against its rule."""
    names = [f.name for f in dataclasses.fields(cls) if f.name not in leave_out]
    unknown = [k for k in given if k not in names]
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]} is not a setting here; settings: {', '.join(names)}")
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()}
    check(cls, plain, prefix)
    values = defaults(cls)
    return {k: plain.get(k, values[k]) for k in names}


def assign(target, values: dict) -> None:
    """Each value as an attribute of `target` (a callback), and `target.settings()` gives them back."""
    for key, value in values.items():
        setattr(target, key, value)
    target._settings = tuple(values)


# -- what comes from a settings class: the yaml's keys and the docs' table ---------------------------

MARK = "# -- settings: written by `python -m compressor.settings` from {source}; edit them there"


def as_yaml(value) -> str:
    """A value as one line of yaml (flow style, keys in their order)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def render(cls) -> str:
    """The yaml block of a settings class's keys: `key: default  # what it means`, one per line."""
    source = sys.modules[cls.__module__].__file__
    source = Path(source).relative_to(Path(__file__).resolve().parent.parent).as_posix()
    lines, default = [MARK.format(source=source)], cls()
    for f in ordered(cls):
        doc = f.metadata.get("doc", "")
        lines.append(f"{f.name}: {as_yaml(getattr(default, f.name))}" + (f"  # {doc}" if doc else ""))
    return "\n".join(lines) + "\n"


def written(path: Path, cls) -> str:
    """The yaml file at `path` with its settings block (everything from the MARK line on) written
    from `cls`; what comes before it (comments, `defaults`, `_target_`, name, kind) is kept."""
    head = path.read_text().split("# -- settings:")[0]
    return head.rstrip("\n") + "\n" + render(cls)


def table(cls) -> str:
    """A markdown table of a settings class's keys: key, default, allowed, meaning."""
    rows, default = ["| key | default | allowed | meaning |", "|---|---|---|---|"], cls()
    for f in ordered(cls):
        allowed = f.metadata.get("rule", (None, ""))[1]
        doc = f.metadata.get("doc", "").replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{as_yaml(getattr(default, f.name))}` | {allowed} | {doc} |")
    return "\n".join(rows) + "\n"


def technique_files(conf: Path) -> dict:
    """{conf/technique/<name>.yaml: its stage's settings class} of each file whose stage declares one."""
    import yaml
    from hydra.utils import get_class

    out = {}
    for path in sorted((conf / "technique").glob("*.yaml")):
        target = (yaml.safe_load(path.read_text()) or {}).get("_target_")
        cls = get_class(target).settings if target else None
        if cls is not None:
            out[path] = cls
    return out


def docs_page(files: dict) -> str:
    """docs/settings.md: each shipped technique's keys, from its settings class."""
    out = [
        "# Settings of each technique",
        "",
        "Written by `python -m compressor.settings` from each technique's settings class",
        "(compressor/techniques/<name>/settings.py), as its conf/technique/<name>.yaml is; edit them there.",
        "Set one on the command line as `technique.<key>=<value>` (in a pipeline `technique.<stage>.<key>`).",
    ]
    for path, cls in files.items():
        out += ["", f"## technique={path.stem}", "", table(cls).rstrip("\n")]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python -m compressor.settings [--check]: write (or compare) the yaml keys and docs
    from compressor.config import conf_dir

    files = technique_files(conf_dir())
    wanted = {path: written(path, cls) for path, cls in files.items()}
    docs = conf_dir().resolve().parent / "docs" / "settings.md"
    if docs.parent.is_dir():
        wanted[docs] = docs_page(files)
    stale = [path for path, text in wanted.items() if not path.is_file() or path.read_text() != text]
    check_only = "--check" in sys.argv
    for path in [] if check_only else stale:
        path.write_text(wanted[path])
    verb = "differ from the settings classes (python -m compressor.settings)" if check_only else "rewritten"
    print(f"{', '.join(p.name for p in stale)}: {verb}" if stale else "every file matches the settings classes")
    sys.exit(1 if stale and check_only else 0)
