# The two commands the README names:
#   make demo   set up a virtualenv and run the demo on the default lake (./lake)
#   make test   set up a virtualenv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup data lint typecheck bench notebooks notebooks-sync clean-lake

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (IDX files under /usr/share/datasets).
data:
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist); \
	  else echo "install Fashion-MNIST first: sudo apt-get install dataset-fashion-mnist"; exit 1; fi; }

demo: $(STAMP) data
	$(BIN)/weightlake demo --lake lake

test: $(STAMP) data
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check weightlake tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Notebooks: the .py percent scripts are the source; sync writes the .ipynb twins, notebooks runs them in full.
notebooks-sync: $(STAMP)
	$(BIN)/jupytext --to ipynb notebooks/[0-9][0-9]_*.py

notebooks: $(STAMP) data
	cd notebooks && for nb in [0-9][0-9]_*.ipynb; do \
	  ../$(BIN)/jupyter execute --inplace "$$nb" || exit 1; done

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-lake:
	rm -rf lake/_current lake/_snapshots lake/zoos lake/models lake/tables lake/batches lake/_lock
