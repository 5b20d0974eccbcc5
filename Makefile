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

.PHONY: setup demo test bench docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,offline-weights,export,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) examples/demo_fsdd.py $(if $(DATA),--data $(DATA)) --out $(OUT)

test: setup
	$(if $(DATA),SPECIMG_FSDD=$(DATA)) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: setup
	$(PY) benchmarks/render.py

docs: setup
	$(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf $(OUT) site .pytest_cache
