# Every routine task has a target. The first run creates .venv and installs pulsegate with its
# dev dependencies from pyproject.toml; later runs reuse it unless pyproject.toml changed.
# The distribution's Python 3.11 (Debian's is built with PGO and LTO: 11% less CPU on the proxy's
# hot path than a default source build such as pyenv's) unless PYTHON is given.
PYTHON ?= $(shell /usr/bin/python3 -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo /usr/bin/python3 || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-pure lint typecheck unit bench bench-routing clean

# The per-request modules are compiled with mypyc (setup.py): rebuild when they change, so tests
# never run a stale compiled copy.
COMPILED_SRC := $(wildcard src/pulsegate/http/*.py src/pulsegate/http/*.c src/pulsegate/proxy/*.py src/pulsegate/balancing/*.py) \
	src/pulsegate/metrics/histogram.py src/pulsegate/metrics/stats.py src/pulsegate/accesslog.py \
	src/pulsegate/health/budget.py

$(STAMP): pyproject.toml setup.py scripts/bootstrap.sh $(COMPILED_SRC)
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pulsegate demo

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

unit: $(STAMP)
	$(BIN)/python -m pytest -q

# The same tests on the pure-Python build (what installs without a C compiler). The next `make`
# target rebuilds the compiled modules.
test-pure:
	PULSEGATE_PURE_PYTHON=1 bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	rm -f $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/proxy_bench.py

bench-routing: $(STAMP)
	$(BIN)/python benchmarks/routing_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build src/*.egg-info
	find src -name '*.so' -delete
