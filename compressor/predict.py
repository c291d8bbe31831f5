"""python -m compressor.predict RUN_DIR IMAGE_FOLDER: class and probabilities for every image.

Works for every artifact a run leaves: fp32, pruned, quantized (model.pt) and ONNX
(`--onnx` picks model.onnx, or model.int8.onnx with --onnx int8). An unreadable image is
reported by name and the rest are still predicted."""
import argparse
import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image, UnidentifiedImageError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def load_model(run_dir: Path, onnx: str | None):
    from compressor import artifact, export

    if onnx:
        path = run_dir / ("model.int8.onnx" if onnx == "int8" else "model.onnx")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file (run with export=onnx, or technique.backend=onnxruntime)")
        return export.OnnxModel(path)
    path = run_dir / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model.pt in this run directory")
    return artifact.load(path)


def predict_folder(run_dir, folder, onnx=None) -> list[dict]:
    run_dir, folder = Path(run_dir), Path(folder)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: not a run directory (no config.yaml)")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    cfg = OmegaConf.load(config)
    transform = instantiate(cfg.dataset).transform()
    model = load_model(run_dir, onnx)
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
        results.append({"image": path.name, "predicted_class": int(probs.argmax()),
                        "probabilities": [round(float(p), 6) for p in probs]})
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compressor.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("folder")
    parser.add_argument("--onnx", choices=["fp32", "int8"], help="use the run's ONNX export instead of model.pt")
    args = parser.parse_args(argv)
    try:
        results = predict_folder(args.run_dir, args.folder, args.onnx)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2))
    bad = [r["image"] for r in results if "error" in r]
    if bad:
        print(f"warning: {len(bad)} unreadable image(s): {', '.join(bad)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
