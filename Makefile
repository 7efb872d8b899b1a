# cronledger: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install lint test demo scenario bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check cronledger tests bench examples
	$(BIN)/ruff format --check cronledger tests bench examples
	$(BIN)/mypy --strict cronledger

test: lint
	$(BIN)/python -m pytest -q

demo: install
	PYTHON=$(BIN)/python bash examples/demo.sh

# The pure core alone: three virtual hours, an outage, verify (no daemon, no real time).
scenario: install
	$(BIN)/python examples/core_scenario.py

# Both benchmarks always run; the target fails if either misses a goal.
bench: install
	$(BIN)/python bench/core.py; core=$$?; \
	$(BIN)/python bench/dispatch.py; dispatch=$$?; \
	test $$core -eq 0 && test $$dispatch -eq 0

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
