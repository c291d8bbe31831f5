"""predict on a folder with one corrupt image: reported by name, the rest still predicted."""

import numpy as np
from PIL import Image

from compressor.predict import predict_folder
from tests.conftest import run_job


def test_predict_folder_with_a_corrupt_image(tmp_path):
    # ExecuTorch's files are served in tests/test_runtimes.py; here the two older runtimes, seconds fewer
    run_job(tmp_path, ["technique=quant", "export=all", "export.executorch=false", "technique.calibration_batches=2"])
    run = tmp_path / "outputs" / "run"
    from omegaconf import OmegaConf

    assert (run / "config.yaml").is_file() and OmegaConf.load(run / "config.yaml").dataset.name == "digits"
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32), 80 * i, np.uint8)).save(images / f"digit{i}.png")
    (images / "broken.png").write_bytes(b"not an image")
    for onnx, runtime, precision, static in (
        (None, "torch", None, False),
        ("fp32", "torch", None, False),
        ("int8", "torch", None, False),
        (None, "openvino", None, False),
        (None, "openvino", "fp32", False),
        (None, "openvino", None, True),
        (None, "onnxruntime", None, False),
    ):
        results = predict_folder(run, images, onnx, runtime=runtime, precision=precision, static=static)
        assert [r["image"] for r in results] == ["broken.png", "digit0.png", "digit1.png", "digit2.png"]
        assert "error" in results[0] and "broken" not in results[0]["error"]
        for r in results[1:]:
            assert 0 <= r["predicted_class"] < 10 and abs(sum(r["probabilities"]) - 1) < 1e-4


def test_a_static_shape_is_for_openvino_files_only(tmp_path):
    import pytest

    from compressor.errors import ConfigError

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("dataset: {in_channels: 1, image_size: 8, mean: [0.5], std: [0.5]}\n")
    (tmp_path / "images").mkdir()
    with pytest.raises(ConfigError, match="--static-shape with --runtime onnxruntime"):
        predict_folder(run, tmp_path / "images", runtime="onnxruntime", static=True)
