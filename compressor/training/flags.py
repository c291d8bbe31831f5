"""torch's global flags kept to a block: the one thing a fit and a measurement both need from the
other side of building a Trainer."""

from contextlib import contextmanager


@contextmanager
def torch_flags_kept():
    """Building a Lightning Trainer sets torch's global deterministic-algorithms flag
    (`trainer.deterministic`); this keeps it to the block, so int8 kernels measured afterwards
    do not warn hundreds of times that they have no deterministic twin."""
    import torch

    state = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(state[0], warn_only=state[1])
