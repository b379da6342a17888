# The two commands of the quick start. Each creates .venv from requirements.txt when missing.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
WORKDIR ?= workdirs/default

.PHONY: train test

$(VENV)/installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

train: $(VENV)/installed
	$(PYTHON) train.py --config configs/default.py --workdir $(WORKDIR)

$(VENV)/test-installed: $(VENV)/installed tests/requirements.txt requirements-export.txt
	$(VENV)/bin/pip install -q -r tests/requirements.txt -r requirements-export.txt
	$(VENV)/bin/pip install -q --no-deps jax2onnx==0.17.1  # see requirements-export.txt
	touch $@

test: $(VENV)/test-installed
	$(PYTHON) -m pytest tests -n auto --maxprocesses=4 --dist worksteal --durations=15
