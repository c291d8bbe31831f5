"""How one state-dict value is stored: the tensors it becomes in safetensors and the JSON spec that
rebuilds it (compressor/storage/artifact.py holds the file around them). A float tensor of at most
SHARED_MAX distinct values is a codebook plus bit-packed, DEFLATE-coded indices; a tensor of at
least SPARSE_MIN elements that is at most DENSE_ABOVE non-zero is a compressed bit mask plus its
non-zero values; int8 codes, tensor subclasses and tuples are made of those. Decoding never
inflates past the size a spec declares."""

import zlib

import numpy as np
import torch
from torch import nn

DENSE_ABOVE = 0.9  # a tensor denser than this is cheaper stored dense
SPARSE_MIN = 256  # smaller tensors are stored dense
SHARED_MAX = 256  # a float tensor of at most this many distinct values is stored as codebook + codes


class Writer:
    """Turns state-dict values into (safetensors tensors, JSON spec)."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def plain(self, name: str, t: torch.Tensor) -> dict:
        t = t.detach().cpu()
        if t.dtype != torch.bool and t.numel() >= SPARSE_MIN:
            mask = t != 0
            if mask.float().mean() <= DENSE_ABOVE:
                bits = zlib.compress(np.packbits(mask.flatten().numpy()).tobytes(), 9)
                self.tensors[f"{name}#mask"] = torch.frombuffer(bytearray(bits), dtype=torch.uint8)
                return {"sparse": name, "shape": list(t.shape), "values": self.shared(f"{name}#values", t[mask])}
        return self.shared(name, t)

    def shared(self, name: str, t: torch.Tensor) -> dict:
        """A float tensor of at most SHARED_MAX distinct values (weight sharing) as its codebook and
        bit-packed indices, DEFLATE-coded (LZ77 + Huffman, the coding step of Deep Compression)."""
        if t.is_floating_point() and t.numel() >= SPARSE_MIN:
            codebook, index = torch.unique(t.flatten(), return_inverse=True)
            if codebook.numel() <= SHARED_MAX:
                width = max(1, (codebook.numel() - 1).bit_length())
                bits = np.unpackbits(index.to(torch.uint8).numpy()[:, None], axis=1)[:, 8 - width :]
                codes = zlib.compress(np.packbits(bits.flatten()).tobytes(), 9)
                self.tensors[f"{name}#codebook"] = codebook.contiguous()
                self.tensors[f"{name}#codes"] = torch.frombuffer(bytearray(codes), dtype=torch.uint8)
                return {"shared": name, "shape": list(t.shape), "bits": width}
        self.tensors[name] = t.contiguous().clone()  # own storage: safetensors refuses shared tensors
        return {"tensor": name}

    def encode(self, name: str, v) -> dict:
        if isinstance(v, torch.Tensor) and v.is_quantized:
            spec = {"qtensor": self.plain(name, v.int_repr()), "dtype": str(v.dtype).removeprefix("torch.")}
            if v.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                spec.update(
                    scales=self.plain(f"{name}#scales", v.q_per_channel_scales()),
                    zero_points=self.plain(f"{name}#zero_points", v.q_per_channel_zero_points()),
                    axis=v.q_per_channel_axis(),
                )
            else:
                spec.update(scale=v.q_scale(), zero_point=v.q_zero_point())
            return spec
        if isinstance(v, torch.Tensor) and type(v) not in (torch.Tensor, nn.Parameter):
            names, _ = v.__tensor_flatten__()  # a tensor subclass (torchao): store its inner tensors
            return {"subclass": {n: self.encode(f"{name}#{n}", getattr(v, n)) for n in names}}
        if isinstance(v, torch.Tensor):
            return self.plain(name, v)
        if isinstance(v, (tuple, list)):
            return {"seq": [self.encode(f"{name}#{i}", x) for i, x in enumerate(v)]}
        if isinstance(v, torch.dtype):
            return {"dtype": str(v).removeprefix("torch.")}
        if v is None or isinstance(v, (bool, int, float, str)):
            return {"value": v}
        raise TypeError(f"cannot store a {type(v).__name__} at {name}")


def dtype_of(name: str) -> torch.dtype:
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return value


def inflate(blob: torch.Tensor, size: int) -> np.ndarray:
    """A zlib-compressed bit mask of exactly `size` bytes; never inflates past it (no zip bomb)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob.numpy().tobytes(), size)
    except zlib.error as exc:
        raise ValueError(f"damaged sparse mask ({exc})") from None
    if len(raw) != size or not inflater.eof or inflater.unconsumed_tail:
        raise ValueError(f"sparse mask of {len(raw)} bytes, expected {size}")
    return np.frombuffer(raw, dtype=np.uint8)


def decode(spec: dict, tensors: dict, template=None):
    """The state-dict value a spec describes; `template` is the rebuilt model's own value at that
    key, which supplies a tensor subclass's type and constants (never read from the file)."""
    if "tensor" in spec:
        return tensors[spec["tensor"]]
    if "shared" in spec:
        codebook, shape, width = tensors[f"{spec['shared']}#codebook"], spec["shape"], int(spec["bits"])
        n = int(np.prod(shape))
        if not 1 <= width <= 8 or codebook.numel() > 2**width:
            raise ValueError(f"a shared tensor of {codebook.numel()} values in {width}-bit codes")
        bits = np.unpackbits(inflate(tensors[f"{spec['shared']}#codes"], (n * width + 7) // 8))[: n * width]
        index = np.packbits(np.concatenate([np.zeros((n, 8 - width), np.uint8), bits.reshape(n, width)], 1), axis=1)
        index = torch.from_numpy(index.flatten().astype(np.int64))
        if n and int(index.max()) >= codebook.numel():
            raise ValueError("a shared tensor's code points past its codebook")
        return codebook[index].view(shape)
    if "sparse" in spec:
        shape = spec["shape"]
        values = decode(spec["values"], tensors) if "values" in spec else tensors[f"{spec['sparse']}#values"]
        n = int(np.prod(shape))
        mask = torch.from_numpy(
            np.unpackbits(inflate(tensors[f"{spec['sparse']}#mask"], (n + 7) // 8))[:n].astype(bool)
        )
        out = torch.zeros(n, dtype=values.dtype)
        out[mask] = values
        return out.view(shape)
    if "qtensor" in spec:
        ints = decode(spec["qtensor"], tensors)
        if "axis" in spec:
            return torch._make_per_channel_quantized_tensor(
                ints, decode(spec["scales"], tensors), decode(spec["zero_points"], tensors), int(spec["axis"])
            )
        return torch._make_per_tensor_quantized_tensor(ints, float(spec["scale"]), int(spec["zero_point"]))
    if "subclass" in spec:
        if template is None or not hasattr(template, "__tensor_flatten__"):
            raise ValueError("a tensor subclass where the rebuilt model has a plain value")
        names, ctx = template.__tensor_flatten__()
        if sorted(names) != sorted(spec["subclass"]):
            raise ValueError(f"inner tensors {sorted(spec['subclass'])}, expected {sorted(names)}")
        inner = {n: decode(spec["subclass"][n], tensors, getattr(template, n)) for n in names}
        return type(template).__tensor_unflatten__(inner, ctx, template.size(), template.stride())
    if "seq" in spec:
        parts = template if isinstance(template, (tuple, list)) else [None] * len(spec["seq"])
        return tuple(decode(s, tensors, t) for s, t in zip(spec["seq"], parts))
    if "dtype" in spec:
        return dtype_of(spec["dtype"])
    if "value" in spec:
        return spec["value"]
    raise ValueError(f"unknown state entry {sorted(spec)}")
