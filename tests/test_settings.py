"""Each technique's settings are declared once, in its settings class (issue 56): the yaml's keys and
docs/settings.md are written from it, the composed config holds its defaults, and a callback built
by hand takes the same defaults and the same rules."""

import dataclasses

import pytest
from omegaconf import OmegaConf

from compressor import settings
from compressor.config import CONF
from compressor.errors import ConfigError
from compressor.techniques import base
from compressor.techniques.shared import FIT
from tests.conftest import make_cfg

FILES = settings.technique_files(CONF)


def test_every_technique_with_a_stage_has_a_settings_class():
    stems = {p.stem for p in (CONF / "technique").glob("*.yaml")}
    assert {p.stem for p in FILES} == stems - {"baseline", "pipeline"}


@pytest.mark.parametrize("path", list(FILES), ids=lambda p: p.stem)
def test_the_yaml_is_what_its_settings_class_writes(path):
    """`python -m compressor.settings --check` in-process: the keys below the mark are the class's."""
    assert path.read_text() == settings.written(path, FILES[path]), f"run python -m compressor.settings ({path.name})"


def test_the_docs_table_is_what_the_settings_classes_write():
    page = CONF.resolve().parent / "docs" / "settings.md"
    assert page.read_text() == settings.docs_page(FILES)


@pytest.mark.parametrize("path", list(FILES), ids=lambda p: p.stem)
def test_the_composed_config_holds_every_default_and_passes_its_rules(tmp_path, path):
    """Read as a job reads it: every field is a key of the composed technique, at its default, and
    the stage's own validation (each rule, then the joined ones) passes."""
    node = make_cfg(tmp_path, [f"technique={path.stem}"]).technique
    cls = FILES[path]
    resolved = OmegaConf.to_container(node, resolve=True)
    for f in dataclasses.fields(cls):
        assert f.name in node, f"technique.{f.name} missing from {path.name}"
        default = getattr(cls(), f.name)
        if not (isinstance(default, str) and default.startswith("${")):  # an interpolation: resolved by the job
            assert resolved[f.name] == default, f.name
    base.stage_class("technique.", node).validate("technique.", node)


def test_a_bad_value_is_one_line_naming_the_key_and_what_is_allowed(tmp_path):
    node = make_cfg(tmp_path, ["technique=prune", "technique.method=magic"]).technique
    with pytest.raises(ConfigError, match=r"^technique.method='magic': must be one of l1_unstructured, ") as err:
        base.stage_class("technique.", node).validate("technique.", node)
    assert "\n" not in str(err.value)


def test_a_callback_built_by_hand_takes_the_defaults_and_refuses_unknown_keys():
    """Lightning style, outside a job: the same defaults and rules as technique=prune and technique=nm."""
    from compressor.techniques.nm.callback import NMSparsity
    from compressor.techniques.nm.settings import NM
    from compressor.techniques.prune.callback import Pruning
    from compressor.techniques.prune.settings import Prune

    cb = Pruning(method="channel")
    assert cb.method == "channel"
    # scope's null means "layer" for channels (settings.scope_of)
    assert cb.settings() == {**settings.make(Prune, {}, leave_out=FIT), "method": "channel", "scope": "layer"}
    assert NMSparsity().n == NM.n and NMSparsity().m == NM.m
    with pytest.raises(ConfigError, match=r"^technique.amout is not a setting here; settings: amount, method, "):
        Pruning(amout=0.3)
    with pytest.raises(ConfigError, match=r"^technique.epochs is not a setting here"):
        Pruning(epochs=3)  # the fit's setting: the stage's, not the callback's


def test_a_default_written_anywhere_else_is_gone():
    """The callbacks take `**settings`; no signature repeats a default (the four copies of issue 56)."""
    import inspect

    from compressor.techniques.cluster.callback import Clustering
    from compressor.techniques.nm.callback import NMSparsity
    from compressor.techniques.prune.callback import Pruning
    from compressor.techniques.quant.callback import Quantization
    from compressor.techniques.sensitivity.callback import Sensitivity

    for callback, cls in ((Pruning, "Prune"), (Quantization, "Quant"), (Clustering, "Cluster"), (NMSparsity, "NM")):
        params = inspect.signature(callback).parameters
        declared = {f.name for f in dataclasses.fields(next(c for c in FILES.values() if c.__name__ == cls))}
        assert not declared & set(params), f"{callback.__name__} repeats {declared & set(params)} in its signature"
    assert "grid" not in inspect.signature(Sensitivity).parameters
