# earl-mmdet: set-up and entry points. `make demo` and `make test` are the README's contract.
#
#   make install   build .venv (torch CPU, mmcv 2.1.0 with compiled ops, mmengine, mmdet, ...)
#   make test      install, then the default (fast) test suite
#   make demo      install, then the main job: MED-MNIST (cpu preset) -> fuse -> WBF+EARL -> report
#   make lint      ruff check + format check
#
# CUDA users: `make install TORCH_SPEC="torch==2.1.2 --index-url https://download.pytorch.org/whl/cu118"`
# (any torch that mmcv 2.1.0 builds against); or install into your own env with `pip install -e .`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_SPEC ?= torch==2.13.0
MMCV_VERSION ?= 2.1.0
MAX_JOBS ?= 2
STAMP := $(VENV)/.earl-installed
PYTEST_ARGS ?=

.PHONY: install test test-slow demo lint format clean

install: $(STAMP)

$(STAMP): setup.py requirements.txt requirements-dev.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_SPEC) "setuptools<81" wheel ninja numpy
	$(PY) -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$(MMCV_VERSION)'" 2>/dev/null || \
		MMCV_WITH_OPS=1 MAX_JOBS=$(MAX_JOBS) $(PIP) install --no-build-isolation mmcv==$(MMCV_VERSION)
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps crowd-kit==1.4.2  # see requirements-dev.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import earl_mmdet, mmdet; from mmcv.ops import nms, batched_nms, RoIAlign; print('earl-mmdet', earl_mmdet.__version__, 'mmdet', mmdet.__version__)"
	touch $(STAMP)

test: install
	OMP_NUM_THREADS=2 $(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	OMP_NUM_THREADS=2 $(PY) -m pytest -q -m slow $(PYTEST_ARGS)

demo: install
	$(PY) tools/demo.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) work_dirs .pytest_cache .ruff_cache
