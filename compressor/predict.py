"""python -m compressor.predict RUN_DIR IMAGE_FOLDER: class and probabilities for every image.

Works for every artifact a run leaves: fp32, pruned, quantized (model.safetensors, or the
model.pt of earlier releases) and every runtime's file (`--runtime NAME`: ONNX Runtime, OpenVINO,
ExecuTorch or a runtime of your own by module path; compressor/runtimes): the int8 file where the run
has one, `--precision fp32` the float one, `--static-shape` compiled for the input's fixed shape (a
search's `static` file). Nothing in the run folder can run code: the model loads without pickle, its
architecture may only name model factories (`--allow-target PREFIX` adds one), and the image
transform is built from the numbers in config.yaml, never from a `_target_` there.
An unreadable image is reported by name and the rest are still predicted."""

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image, UnidentifiedImageError

from compressor.errors import ConfigError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_model(
    run_dir: Path,
    onnx: str | None,
    trust: bool = False,
    targets=(),
    runtime: str = "torch",
    precision: str | None = None,
    static: bool = False,
):
    from compressor import runtimes
    from compressor.runtimes.deploy import open_file
    from compressor.storage import artifact

    if onnx:  # --onnx fp32|int8: the older spelling of --runtime <the onnx switch's runtime> --precision
        runtime, precision = runtimes.by_key("onnx"), onnx
    if runtime != "torch":
        rt = runtimes.get(runtime)
        rt.require()
        if static and not rt.STATIC:
            raise ConfigError(f"--static-shape with --runtime {runtime}: its files are not compiled for a fixed shape")
        precision = precision or ("int8" if (run_dir / rt.FILES["int8"]).is_file() else "fp32")
        path = run_dir / rt.FILES[precision]
        if not path.is_file():
            raise ConfigError(
                f"{path}: no such {runtime} file (run with export=all, export.runtimes=[{runtime}] or "
                f"technique.backend={runtime})"
            )
        return open_file(runtime, path, static=static)
    for name in (artifact.FILENAME, "model.pt"):  # model.pt: a run of an earlier release
        if (run_dir / name).is_file():
            return open_file("torch", run_dir / name, trust=trust, targets=targets)
    raise ConfigError(f"{run_dir}: no {artifact.FILENAME} in this run directory")


def transform_of(config: Path):
    from compressor.data.base import image_transform

    try:
        d = OmegaConf.load(config).dataset
        return image_transform(int(d.in_channels), int(d.image_size), list(d.mean), list(d.std))
    except Exception as exc:  # a config.yaml we did not write, or edited by hand
        raise ConfigError(
            f"{config}: no usable dataset.in_channels/image_size/mean/std ({type(exc).__name__})"
        ) from None


def predict_folder(
    run_dir, folder, onnx=None, trust=False, targets=(), runtime="torch", precision=None, static=False
) -> list[dict]:
    run_dir, folder = Path(run_dir), Path(folder)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise ConfigError(f"{config}: not a run directory (no config.yaml)")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such image folder")
    transform = transform_of(config)
    model = load_model(run_dir, onnx, trust, targets, runtime, precision, static)
    results = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS):
        try:
            with Image.open(path) as img:
                x = transform(img.convert("RGB")).unsqueeze(0)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            results.append({"image": path.name, "error": f"unreadable image: {type(exc).__name__}"})
            continue
        with torch.no_grad():
            probs = torch.softmax(model(x).float(), 1)[0]
        results.append(
            {
                "image": path.name,
                "predicted_class": int(probs.argmax()),
                "probabilities": [round(float(p), 6) for p in probs],
            }
        )
    return results


def main(argv=None) -> int:
    from compressor import console, runtimes

    parser = argparse.ArgumentParser(
        prog="python -m compressor.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir")
    parser.add_argument("folder")
    parser.add_argument("--onnx", choices=["fp32", "int8"], help="use the run's ONNX export instead of the model")
    parser.add_argument(
        "--runtime",
        default="torch",
        help="torch, a runtime's name (%s) or a module path of your own: run the run's file for it "
        "(results.json's deploy block names the fastest)" % ", ".join(runtimes.names()),
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        help="with a --runtime other than torch: which export (default: int8 where there is one)",
    )
    parser.add_argument(
        "--static-shape",
        action="store_true",
        help="compile for the input's fixed shape (a `static` deploy file; runtimes that have one)",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a pickled model file that names classes or functions (only one you vouch for)",
    )
    parser.add_argument(
        "--allow-target",
        action="append",
        default=[],
        metavar="PREFIX",
        help="a module prefix the model's architecture may name (your own model package)",
    )
    args = parser.parse_args(argv)
    console.quiet()
    try:
        results = predict_folder(
            args.run_dir,
            args.folder,
            args.onnx,
            args.trust_checkpoint,
            args.allow_target,
            args.runtime,
            args.precision,
            args.static_shape,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2))
    bad = [r["image"] for r in results if "error" in r]
    if bad:
        print(f"warning: {len(bad)} unreadable image(s): {', '.join(bad)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
