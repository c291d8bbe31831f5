PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install fashion-mnist run test test-all test-cluster docs lint bench tensorboard clean

install: $(STAMP) fashion-mnist

# Fashion-MNIST (dataset=fashion_mnist, what make bench measures on) from Debian's package, where
# apt-get is there and we are root; otherwise one line says what was skipped and how to get the data
FASHION := /usr/share/datasets/fashion-mnist
fashion-mnist:
	@if [ -f $(FASHION)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "make install: apt-get install dataset-fashion-mnist failed; dataset=fashion_mnist needs dataset.data_dir=<folder with its four idx .gz files> or a network"; \
	else echo "make install: skipped Debian's dataset-fashion-mnist (needs apt-get as root); dataset=fashion_mnist needs dataset.data_dir=<folder with its four idx .gz files> or a network"; fi

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,timm,openvino,executorch]'
	touch $(STAMP)

# one sweep folder for both commands: the report then compares the KD student with the same student
# trained alone (technique.loss=ce), seed for seed
RUN_DIR := outputs/make_run/$(shell date +%Y-%m-%d_%H-%M-%S)
# Fashion-MNIST on 10,000 of its training images (README: Quick start, why), installed first like
# make install does; mnist5k only where it could not be (not root, no apt-get). The choice is made when
# the recipe runs, after fashion-mnist: a fresh clone gets Fashion-MNIST too
FASHION_DATA := dataset=fashion_mnist dataset.train_size=10000
run: $(STAMP) fashion-mnist
	@if [ -f $(FASHION)/train-images-idx3-ubyte.gz ]; then data="$(FASHION_DATA)"; echo "make run: $$data"; \
	else data=dataset=mnist5k; echo "make run: $$data (no Fashion-MNIST in $(FASHION): see the line above)"; fi; \
	set -e; \
	$(BIN)/python run.py -m technique=baseline,prune,quant,kd,pipeline $$data hydra.sweep.dir=$(RUN_DIR); \
	$(BIN)/python run.py -m technique=kd technique.loss=ce $$data hydra.sweep.dir=$(RUN_DIR) hydra.sweep.subdir=student_alone

# one pytest-xdist worker per core, each test file on one worker (its module fixtures built once)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15 tests

# the manual (docs/, mkdocs.yml): --strict turns a broken link, anchor or page left out of nav into a failure
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

test-all: $(STAMP)
	COMPRESSOR_TEST_FORK=0 $(BIN)/python -m pytest -q -m 'not cluster' tests

# a single-node SLURM cluster from Debian's packages (tests/cluster/up: root and apt-get, else the
# tests are skipped with its reason), then the tests that run sweeps and searches on it
# starts the single-node cluster, runs the cluster tests, and stops it again unless it was running before
test-cluster: $(STAMP)
	@if sinfo -h >/dev/null 2>&1; then was=up; else was=down; fi; \
	tests/cluster/up || [ $$? -eq 3 ] || exit 1; \
	$(BIN)/python -m pytest -q -m cluster tests; status=$$?; \
	if [ $$was = down ]; then tests/cluster/up down; fi; exit $$status

# ruff, configured in pyproject.toml: lint (pycodestyle, pyflakes, import order) and the formatter's check
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m experiments.bench $(ARGS)

tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir outputs

clean:
	rm -rf $(VENV)
