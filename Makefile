PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-all bench tensorboard clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,timm,openvino]'
	touch $(STAMP)

# one sweep folder for both commands: the report then compares the KD student with the same student
# trained alone (technique.loss=ce), seed for seed
RUN_DIR := outputs/make_run/$(shell date +%Y-%m-%d_%H-%M-%S)
run: $(STAMP)
	$(BIN)/python run.py -m technique=baseline,prune,quant,kd,pipeline hydra.sweep.dir=$(RUN_DIR)
	$(BIN)/python run.py -m technique=kd technique.loss=ce hydra.sweep.dir=$(RUN_DIR) hydra.sweep.subdir=student_alone

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m '' tests

bench: $(STAMP)
	$(BIN)/python -m experiments.bench

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir outputs

clean:
	rm -rf $(VENV)
