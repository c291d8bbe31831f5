"""The techniques, one folder each, and the stage protocol they implement (base.py).

A technique's folder holds all of it: `settings.py` (its settings class: each key's default, rule
and meaning, declared once and torch-free: checked before torch loads), `stage.py` (its Stage: the recipe applied to a model), and where it
has them `callback.py` (its Lightning callback, usable in any Trainer), `budget.py` (how an
accuracy budget searches its recipe) and `scan.py` (its per-layer sensitivity scan). Its config
is one file, conf/technique/<name>.yaml, whose `_target_` names the stage class, the project's
only registry, and whose keys `python -m compressor.settings` writes from the settings class. Nothing here imports a technique; adding one touches no other module.

Imports point down only: job -> budget -> techniques -> training, storage, runtimes, quant,
models, data -> settings, errors (tests/test_stage_protocol.py follows them, function-local too)."""
