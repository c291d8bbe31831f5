"""The runtime registry (compressor/runtimes): a runtime of your own, added as one module outside
the package (tests/toy_runtime.py) and touching no shared file, is exported, checked, timed beside
the others, searched and served by compressor.predict; ExecuTorch, the fourth built-in, added the
same way, writes int8 .pte files that XNNPACK runs, is timed in the report and can be shipped."""

import json
import sys
from pathlib import Path

import pytest
from conftest import run_job
from test_search import SEARCH

from compressor.errors import ConfigError

TOY = "tests.toy_runtime"


def predict(run_dir, *args):
    import io
    from contextlib import redirect_stdout

    from compressor.predict import main

    images = Path(run_dir) / "images"
    images.mkdir(exist_ok=True)
    from PIL import Image

    Image.new("L", (8, 8), 128).save(images / "a.png")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main([str(run_dir), str(images), *args])
    return code, json.loads(out.getvalue()) if code == 0 else None


def test_a_runtime_of_your_own_is_exported_timed_and_served(tmp_path):
    r = run_job(
        tmp_path, ["technique=quant", "export=none", f"export.runtimes=[{TOY}]", "technique.calibration_batches=2"]
    )
    files = r["export"][TOY]
    assert set(files) == {"fp32", "int8"} and files["int8"]["path"].endswith("model.int8.toy")
    assert files["fp32"]["agreement_ok"] and files["int8"]["agreement"] >= 0.95
    toy = {c["label"]: c for c in r["deploy"]["candidates"] if c["runtime"] == TOY}
    assert set(toy) == {f"{TOY} fp32", f"{TOY} int8"}  # candidates to ship, each timed beside the baseline
    assert all(c["latency/b1_ms"] > 0 and c["latency/b64_ms"] > 0 for c in toy.values())
    code, out = predict(tmp_path / "outputs" / "run", "--runtime", TOY)
    assert code == 0 and 0 <= out[0]["predicted_class"] < 10


def test_a_search_on_a_runtime_of_your_own_ships_its_file(tmp_path):
    import compressor
    from compressor.config import compose

    search = [a for a in SEARCH if not a.startswith(("search.runtime=", "budget.max_drop="))]
    out = compressor.run(
        compose([*search, f"search.runtime={TOY}", "budget.max_drop=5", "search.max_trials=2"], tmp_path / "o", "s")
    )
    chosen = out["chosen"]
    assert chosen is not None and chosen["runtime"] == TOY and chosen["file"].endswith(".toy"), out["verdict"]


def test_a_runtime_that_is_not_a_module_or_breaks_the_contract_is_one_line(cli, tmp_path, monkeypatch):
    from compressor import runtimes

    proc = cli("technique=quant", "export=none", "export.runtimes=[no_such.runtime]", "dataset=digits")
    assert proc.returncode != 0 and "no_such.runtime" in proc.stderr
    assert "onnxruntime, openvino, executorch" in proc.stderr.strip().splitlines()[-1]
    module = type(sys)("half_a_runtime")
    module.FILES = {"fp32": "x", "int8": "y"}
    monkeypatch.setitem(sys.modules, "half_a_runtime", module)
    with pytest.raises(ConfigError, match="does not declare STATIC, MODES"):
        runtimes.get("half_a_runtime")


def test_executorch_quant_writes_an_int8_pte_that_xnnpack_runs_and_the_report_times_it(tmp_path):
    r = run_job(tmp_path, ["technique=quant", "export=all", "technique.calibration_batches=2"])
    pte = r["export"]["executorch"]
    assert pte["int8"]["path"].endswith("model.int8.pte") and pte["fp32"]["path"].endswith("model.pte")
    assert pte["fp32"]["agreement"] >= 0.995 and pte["int8"]["agreement"] >= 0.95
    assert pte["int8"]["size_mb"] < 0.35 * pte["fp32"]["size_mb"]  # int8 weights in the program
    labels = {c["label"] for c in r["deploy"]["candidates"]}  # timed side by side with every other runtime
    assert {"executorch int8", "onnxruntime int8", "openvino int8 static"} <= labels
    program = Path(pte["int8"]["path"]).read_bytes()
    assert b"XnnpackBackend" in program  # lowered to XNNPACK, not the portable kernels
    code, out = predict(tmp_path / "outputs" / "run", "--runtime", "executorch")
    assert code == 0 and len(out[0]["probabilities"]) == 10
    assert predict(tmp_path / "outputs" / "run", "--runtime", "executorch", "--static-shape")[0] == 2


@pytest.mark.slow  # 65 s on a loaded 2-core machine (make test-all)
def test_executorch_as_the_quant_backend_and_a_search_can_ship_its_file(tmp_path):
    import compressor
    from compressor.config import compose

    r = run_job(tmp_path, ["technique=quant", "technique.backend=executorch", "technique.calibration_batches=2"])
    assert (
        r["deploy"]["candidates"][0]["runtime"] == "executorch"
        and r["deploy"]["candidates"][0]["file"] == "model.int8.pte"
    )
    search = [a for a in SEARCH if not a.startswith(("search.runtime=", "budget.max_drop="))]
    out = compressor.run(
        compose([*search, "search.runtime=executorch", "budget.max_drop=5", "search.max_trials=2"], tmp_path / "o", "s")
    )
    assert out["chosen"] is not None and out["chosen"]["file"].endswith(".pte"), out["verdict"]


def test_no_module_outside_the_runtimes_package_names_a_runtime():
    """Adding a runtime touches compressor/runtimes/ and conf/export/ only: nothing else in the package
    names one, as a string or an import (compressor/runtimes/__init__.py is the registry)."""
    from compressor import runtimes

    package = Path(__file__).resolve().parents[1] / "compressor"
    words = [*runtimes.names(), *(f"runtimes.{p.rsplit('.', 1)[1]}" for p, _ in runtimes.BUILT_IN.values())]
    named = [
        f"{path.relative_to(package)}: {word}"
        for path in package.rglob("*.py")
        if "runtimes" not in path.relative_to(package).parts
        for word in words
        if word in path.read_text()
    ]
    assert not named, named


def test_a_zero_pad_before_a_convolution_runs_on_int8_values_in_executorch(tmp_path):
    """Lite0's TensorFlow 'same' padding: XNNPACKQuantizer leaves dequantize -> float pad -> quantize
    around each pad; int8_pads moves it into the int8 domain, where XNNPACK folds it into the conv."""
    import torch
    from torch import nn

    from compressor.runtimes import executorch

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.ZeroPad2d((0, 1, 0, 1)),  # on the float input
        nn.Conv2d(1, 8, 3, 2),
        nn.ReLU6(),
        nn.ZeroPad2d((1, 2, 1, 2)),  # on a quantized activation
        nn.Conv2d(8, 8, 5, 2, groups=8),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()
    x = torch.randn(64, 1, 16, 16)
    converted = []
    real = executorch.int8_pads
    executorch.int8_pads = lambda graph: converted.append(real(graph)) or graph
    try:
        path = executorch.int8(net, x, [x], None, tmp_path / "model.int8.pte")
    finally:
        executorch.int8_pads = real
    assert converted == [2]  # both pads moved
    int8 = executorch.load(path)
    with torch.no_grad():
        expected = net(x)
    got = torch.as_tensor(int8(x))
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.9
    assert (got - expected).abs().mean() < 0.1 * expected.abs().mean()


def test_int8_pads_leaves_every_pad_between_int8_values_and_its_convolution():
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torch import nn
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from compressor.runtimes.executorch import DEQUANTIZE, QUANTIZE, int8_pads

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(4, 4, 3, 2)).eval()
    x = torch.randn(4, 1, 12, 12)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(net, (x,)).module(), quantizer)
    prepared(x)
    graph = convert_pt2e(prepared)
    before = graph(x)
    pads = [n for n in graph.graph.nodes if "pad" in str(n.target)]
    assert [str(u.target) for p in pads for u in p.users] == [QUANTIZE]  # what XNNPACKQuantizer leaves
    assert int8_pads(graph) == 1 and int8_pads(graph) == 0  # once; a second pass finds nothing to move
    (pad,) = [n for n in graph.graph.nodes if "pad" in str(n.target)]
    assert str(pad.args[0].target) == DEQUANTIZE and [str(u.target) for u in pad.users] == ["aten.conv2d.default"]
    assert torch.allclose(graph(x), before, atol=0.05 * before.abs().max().item())


def test_an_observer_read_only_by_relu6_calibrates_on_what_relu6_lets_through():
    """XNNPACKQuantizer fuses conv + ReLU, not conv + ReLU6: the int8 grid after a conv spanned its
    whole output (here about -60 to 60) and [0, 6] got a tenth of it. Clamped, [0, 6] gets all 256
    steps, and the int8 graph is closer to the float net (fine-tuned Lite0: 1.5 points of validation
    accuracy back)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torch import nn
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from compressor.quant.ops import clamped_observers
    from compressor.runtimes.executorch import QUANTIZE

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU6(), nn.Conv2d(8, 4, 3), nn.ReLU()).eval()
    with torch.no_grad():
        net[0].weight.mul_(20)  # outputs far beyond the clamp
    x = torch.randn(32, 1, 12, 12)
    expected = net(x)

    def int8(clamp: bool):
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(torch.export.export(net, (x,)).module(), quantizer)
        hooked = clamped_observers(prepared) if clamp else 0
        prepared(x)
        graph = convert_pt2e(prepared)
        scales = [n.args[1] for n in graph.graph.nodes if str(n.target) == QUANTIZE]
        return hooked, scales, (graph(x) - expected).abs().mean().item()

    hooked, scales, error = int8(clamp=True)
    plain_hooked, plain_scales, plain_error = int8(clamp=False)
    assert hooked == 1  # the first conv's output; the ReLU after the second is fused already
    assert scales[1] <= 6 / 255 * 1.01 < plain_scales[1] / 5  # [0, 6] on all 256 steps, not a tenth of them
    assert error < 0.7 * plain_error


def test_an_overlapping_adaptive_pool_folds_into_the_linear_after_it_and_nothing_else_does():
    """XNNPACK has no kernel for SimpleCNN's 7x7 -> 4x4 average pool; folded into the classifier's
    first linear layer it is the same function (float), and XNNPACK runs it. A global pool stays."""
    import copy

    import torch

    from compressor.models.cnn import SimpleCNN, SmallCNN
    from compressor.models.efficientnet_lite import EfficientNetLite0
    from compressor.runtimes.executorch import fold_pool

    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    for net, side in ((SimpleCNN(1, 10, 28, width=8), 7), (SmallCNN(1, 10, 28, width=8), 14)):  # the pool's input
        net.eval()
        before, folded = net(x), copy.deepcopy(net)
        assert fold_pool(folded, x) == 1
        assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in folded.modules())
        assert folded.classifier[0].in_features == net.classifier[0].in_features // 16 * side**2
        assert torch.allclose(folded(x), before, atol=1e-5)
    assert fold_pool(SimpleCNN(1, 10, 16, width=8).eval(), torch.randn(2, 1, 16, 16)) == 0  # 4x4 -> 4x4: whole windows
    lite = EfficientNetLite0(1, 10, 32).eval()
    assert fold_pool(lite, torch.randn(2, 1, 32, 32)) == 0  # its global pool stays


def test_the_executorch_file_of_a_simple_cnn_runs_without_the_pool_and_agrees(tmp_path):
    import torch

    from compressor.models.cnn import SimpleCNN
    from compressor.runtimes import executorch

    torch.manual_seed(0)
    net, x = SimpleCNN(1, 10, 28, width=8).eval(), torch.randn(16, 1, 28, 28)
    program = executorch._exported(net, x)
    assert not [n for n in program.graph.nodes if "adaptive_avg_pool" in str(n.target)]
    fp32 = executorch.load(executorch.export(net, x, tmp_path / "model.pte"))
    with torch.no_grad():
        assert torch.allclose(torch.as_tensor(fp32(x)), net(x), atol=1e-4)
    assert any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in net.modules())  # the model itself is untouched
