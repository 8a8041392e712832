# `make demo`: create .venv (first time only) and run the main job on the embedded default.
# `make test`: create .venv (first time only) and run lint + the whole test suite, one
# pytest-xdist worker per core (at most 4).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.zoo-installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch/torchvision pinned to the builds this project is tested with (x86_64).
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/zoo finetune --compare

lint: $(STAMP)
	$(BIN)/ruff check zoo_core plugins tests benchmarks scripts

test: $(STAMP) lint
	$(BIN)/python -m pytest -n auto --maxprocesses 4

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_import.py

clean-venv:
	rm -rf $(VENV)
