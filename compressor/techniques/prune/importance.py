"""Channel pruning's importance criteria (`technique.importance`): a map of names to functions, as
Lightning's ModelPruning maps its choices, each returning one of Torch-Pruning's `Importance`
objects (a score per channel of a coupled group). Nothing here imports torch until a criterion is
built, so the rules can list the names before torch loads.

Your own criterion is one function in a module of your own, named by its import path:
`technique.importance=my_criteria.entropy` (any module the run can import: the working folder is
on the path for the `compressor` command). It takes no argument and returns a Torch-Pruning
Importance. A criterion that reads the loss gradient sets `needs_gradients = True` on the function:
the pruning callback then runs its `taylor_batches` argument's training batches (8) backward first."""

import importlib

from compressor.errors import ConfigError, brief


def l1():
    """Per-layer L1 norm of each filter."""
    import torch_pruning as tp

    return tp.importance.MagnitudeImportance(p=1)


def group_norm():
    """DepGraph's group L2 norm, over every layer coupled to the filter."""
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


def taylor():
    """First-order Taylor: |weight x gradient|, summed over the group."""
    import torch_pruning as tp

    return tp.importance.GroupTaylorImportance()


taylor.needs_gradients = True

CRITERIA = {"l1": l1, "group_norm": group_norm, "taylor": taylor}
ALLOWED = f"one of {', '.join(CRITERIA)}, or the import path of your own function (module.function)"


def valid(name) -> bool:
    """The rule before torch loads: a known name, or something shaped like an import path."""
    return isinstance(name, str) and (name in CRITERIA or ("." in name and all(name.split("."))))


def named(name: str, key: str = "technique.importance"):
    """The criterion's function: from the map, or imported from its path."""
    if name in CRITERIA:
        return CRITERIA[name]
    module, _, attr = name.rpartition(".")
    if not module:
        raise ConfigError(f"{key}={name}: choose {ALLOWED}")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key}={name}: cannot import it ({brief(exc)}); choose {ALLOWED}") from None


def needs_gradients(name: str) -> bool:
    return bool(getattr(named(name), "needs_gradients", False))
