"""OpenVINO: NNCF int8 through backend=openvino, export=openvino of a channel-pruned model, NNCF's
accuracy control under the accuracy budget, and the best-runtime columns of the report."""

import re
import sys
from pathlib import Path

import pytest
import torch

from compressor import measure
from compressor.errors import ConfigError
from compressor.report.build import build
from compressor.runtimes.openvino import OpenVinoModel, require
from tests.conftest import make_cfg, run_job
from tests.test_budget import crafted


def int8_constants(xml: Path) -> int:
    """Constant nodes of element type i8 in an IR's graph: the int8 weights."""
    return len(re.findall(r'<layer [^>]*type="Const"[^>]*>\s*<data [^>]*element_type="i8"', xml.read_text()))


def loaders(tmp_path):
    from hydra.utils import instantiate

    dm = instantiate(make_cfg(tmp_path).dataset)
    dm.setup()
    return dm


def test_openvino_int8_run_writes_an_int8_ir_that_reloads_and_agrees(tmp_path):
    r = run_job(tmp_path, ["technique=quant", "technique.backend=openvino", "export=openvino"])
    run = Path(r["run"]["run_dir"])
    xml = run / "model.int8.xml"
    assert xml.is_file() and (run / "model.int8.bin").is_file() and (run / "model.xml").is_file()
    assert int8_constants(xml) >= 5  # every conv and linear holds int8 weights
    assert int8_constants(run / "model.xml") == 0
    assert r["compress/size_mb"] == pytest.approx(measure.size_mb(xml))  # .xml + .bin
    assert r["compress/size_mb"] < r["baseline"]["compress/size_mb"] / 3
    logits, labels = measure.predict(OpenVinoModel(xml), loaders(tmp_path).test_dataloader())
    assert measure.accuracy(logits, labels) == pytest.approx(r["test/acc"], abs=1e-6)  # reloads to the same accuracy
    int8 = r["export"]["openvino"]["int8"]
    ran, of = re.fullmatch(r"float32, (\d+) of (\d+) ops int8", int8["computes_in"]).groups()  # f32, not bf16
    assert 0 < int(ran) < int(of) and r["export"]["openvino"]["fp32"]["computes_in"].startswith("float32, 0 of")
    assert int8["agreement"] >= 0.98 and int8["same_as"].startswith("openvino")  # against the float PyTorch model
    assert r["deploy"]["candidates"][0]["runtime"] == "openvino"


def test_export_openvino_of_a_channel_pruned_model(tmp_path):
    r = run_job(tmp_path, ["technique=prune", "technique.method=channel", "technique.epochs=1", "export=all"])
    fp32 = r["export"]["openvino"]["fp32"]
    assert fp32["agreement"] >= 0.995 and fp32["agreement_ok"]
    assert fp32["size_mb"] < 0.5 * r["baseline"]["compress/size_mb"]  # the IR has the fewer channels
    assert "int8" not in r["export"]["openvino"]  # a float run ships float files
    assert all(isinstance(c["test/acc"], float) for c in r["deploy"]["candidates"])  # each shipped file's own accuracy
    labels = {c["label"] for c in r["deploy"]["candidates"]}
    assert labels == {
        "torch (the run's model)",
        "onnxruntime fp32",
        "openvino fp32",
        "openvino fp32 static",
        "executorch fp32",
    }
    static = [c for c in r["deploy"]["candidates"] if c["static_shape"]]
    assert [c["label"] for c in static] == ["openvino fp32 static"] and static[0]["file"] == "model.xml"
    assert r["export"]["openvino"]["fp32 static"]["agreement_ok"]  # checked as a file of its own
    for batch in ("b1", "b64"):
        best = r["deploy"][batch]
        assert best[f"latency/{batch}_ms"] == min(c[f"latency/{batch}_ms"] for c in r["deploy"]["candidates"])
    text = build(tmp_path / "outputs").read_text()
    header = text.splitlines()[0]
    assert "best runtime b1" in header and "best runtime b64" in header
    assert r["deploy"]["b1"]["file"] in text


def test_a_static_shape_compile_fixes_the_input_shape_and_computes_the_same(tmp_path):
    r = run_job(tmp_path, ["technique=baseline", "export=openvino"])
    xml = Path(r["run"]["run_dir"]) / "model.xml"
    dynamic, static = OpenVinoModel(xml), OpenVinoModel(xml, static=True)
    for x, _ in loaders(tmp_path).test_dataloader():
        assert torch.allclose(dynamic(x), static(x), atol=1e-4)
    shapes = {tuple(s) for s in static._compiled}
    assert len(shapes) >= 2 and all(not dynamic_dims(static._compiled[s]) for s in static._compiled)
    assert dynamic_dims(dynamic._compiled[None])  # the IR itself keeps its batch axis dynamic


def dynamic_dims(compiled) -> bool:
    return compiled.inputs[0].get_partial_shape().is_dynamic


def test_budgeted_openvino_int8_uses_nncf_accuracy_control(tmp_path):
    outputs = tmp_path / "outputs"
    run_job(tmp_path, ["technique=baseline"], "base")
    ckpt = crafted(outputs, tmp_path / "crafted.pt")
    full = run_job(tmp_path, ["technique=quant", "technique.backend=openvino", f"model.checkpoint={ckpt}"], "full")
    assert full["val/acc"] < full["baseline"]["val/acc"] - 0.3  # the case: NNCF int8 everywhere collapses
    r = run_job(
        tmp_path,
        ["technique=quant", "technique.backend=openvino", f"model.checkpoint={ckpt}", "budget.max_drop=1.0"],
        "budgeted",
    )
    stage = r["budget"]["stages"][0]
    assert stage["accuracy_control"] == "nncf.quantize_with_accuracy_control" and stage[
        "max_drop_pts"
    ] == pytest.approx(1.0)
    assert r["budget"]["held/val"], (full["val/acc"], r["val/acc"], r["baseline"]["val/acc"])
    assert r["val/acc"] >= full["val/acc"]


def test_a_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf now raises ImportError
    with pytest.raises(ConfigError) as err:
        require()
    assert "compressor[openvino]" in str(err.value) and "\n" not in str(err.value)
