"""A stage's axis of search=default's space: what a technique declares (`Stage.dimension`) so that
compressor/search/space.py names no technique."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dimension:
    """A stage's axis of search=default's space (compressor/search/space.py reads it). Stages may share
    an axis (quant and cluster: `precision`), each owning its own values on it.
    - `axis`: the point's key; `none`: the value that leaves every stage of the axis out;
    - `values(search, model, conf)`: this stage's values (strings), from the search's config;
    - `settings(value)`: the stage's own keys for a point (technique.<kind>.<key>=...);
    - `label(value)`: the point's name for it; `model(value, model)`: the model the pipeline starts
      from (distillation: the student), or None to keep the job's;
    - `shortened`: whether a first rung trains fewer of its epochs (it fine-tunes in a search);
    - `anchor`: each of its values is tried alone first (the cheapest files, which a random first
      generation can miss);
    - `choices`: every value it may own, where the axis is shared (else any value but `none`);
    - `keeps_none(search)`: whether `none` is sampled too."""

    axis: str
    none: str
    values: Any
    settings: Any = None
    label: Any = str
    model: Any = None
    shortened: bool = False
    anchor: bool = False
    choices: tuple = ()
    keeps_none: Any = staticmethod(lambda search: True)

    def owns(self, value: str) -> bool:
        return value in self.choices if self.choices else value != self.none
