"""Where a model runs besides PyTorch: ONNX export and ONNX Runtime (onnx.py), OpenVINO and NNCF
(openvino.py), and the run's deploy step that exports, checks and times every file (deploy.py)."""
