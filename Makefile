# `make train` and `make test` set up a fresh clone and run; see README.md.
PYTHON ?= python
# A CPU build of torch when none is installed (on the project's machines it lies on disk);
# an existing torch, any recent version, is kept.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install train test lint bench

install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	@$(PYTHON) -m pip install -q -e ".[dev]"

train: install
	$(PYTHON) train.py $(ARGS)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# Two workers, one per core of the CI machine, each on one thread (tests/conftest.py).
test: install lint
	$(PYTHON) -m pytest tests -n 2 $(ARGS)

bench: install
	$(PYTHON) benchmarks/update_speed.py $(ARGS)
