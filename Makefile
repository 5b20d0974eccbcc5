# Two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# FSDD: DATA=FOLDER, else ../shared/datasets/fsdd, else downloaded once into ~/.cache/specimg (specimg.datasets)
DATA ?=
OUT ?= demo_out
STAMP := $(VENV)/.specimg-installed
# test processes (pytest-xdist); a test file's tests stay in one process (--dist loadfile)
TEST_WORKERS ?= 2
# numpy, OpenBLAS and torch on their plainest kernels: a stand-in for another CPU. `make test` runs the tests
# of float references (rendered images) once more under it, so a result pinned to this CPU's kernels fails here.
PLAIN_KERNELS := NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR" OPENBLAS_CORETYPE=Nehalem \
	ATEN_CPU_CAPABILITY=default SPECIMG_PLAIN_KERNELS=1
PORTABLE_TESTS := tests/test_spectrogram_defaults.py tests/test_portable.py tests/test_spectrogram_librosa.py
FSDD_ENV := $(if $(DATA),SPECIMG_FSDD=$(DATA))

.PHONY: setup demo test bench docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,offline-weights,export,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) examples/demo_fsdd.py $(if $(DATA),--data $(DATA)) --out $(OUT)

# FSDD first, once (DATA=, ../shared/datasets/fsdd, the user cache or a checksummed download); offline, the
# FSDD tests then skip with one line saying so, except in CI (CI=true), where a missing dataset fails.
test: setup
	$(FSDD_ENV) $(PY) -m specimg.datasets || [ "$${CI:-}" != "true" ]
	$(FSDD_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests
	$(FSDD_ENV) $(PLAIN_KERNELS) $(PY) -m pytest -q -p no:cacheprovider $(PORTABLE_TESTS)

bench: setup
	$(PY) benchmarks/render.py

# specimg vs OpenSoundscape on FSDD (benchmarks/peers.py). OpenSoundscape goes into its own venv, never into
# $(VENV): specimg does not depend on it. PEERS_ARGS passes options, e.g. PEERS_ARGS="--quick" or "--epochs 8".
PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.peers-installed
PEERS_ARGS ?=

$(PEERS_STAMP): constraints-peers.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q -c constraints-peers.txt opensoundscape==0.13.2 timm
	touch $(PEERS_STAMP)

.PHONY: bench-peers
bench-peers: setup $(PEERS_STAMP)
	$(FSDD_ENV) $(PY) benchmarks/peers.py --peers-python $(PEERS_VENV)/bin/python $(if $(DATA),--fsdd $(DATA)) $(PEERS_ARGS)

docs: setup
	$(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf $(OUT) site .pytest_cache
