"""Any timm architecture (`model=timm model.net.model_name=<name>`). timm is optional: it is
imported only here, and a missing install is a one-line error naming the extra."""

from torch import nn

from compressor.errors import ConfigError


def create(model_name: str, in_channels: int, num_classes: int, pretrained: bool = False, **kwargs) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError("model=timm needs the optional package timm: pip install 'compressor[timm]'") from None
    if model_name not in timm.list_models():
        raise ConfigError(f"model.net.model_name={model_name!r}: not a timm architecture (timm.list_models())")
    return timm.create_model(model_name, pretrained=pretrained, in_chans=in_channels, num_classes=num_classes, **kwargs)
