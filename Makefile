# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench fuzz soak wheel clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/presence-gateway demo

lint: $(STAMP)
	$(BIN)/ruff check gateway drivers firmware_tools tests bench setup.py

typecheck: $(STAMP)
	MYPY=$(BIN)/mypy .ci/typecheck

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck unit

# Every property test with its budget multiplied (>= 300k cases per parser; long: hours).
PG_FUZZ_SCALE ?= 1000
fuzz: $(STAMP)
	PG_FUZZ_SCALE=$(PG_FUZZ_SCALE) $(BIN)/pytest -q -p no:cacheprovider --timeout=0 -k 'fuzz or hostile or never_raise or garbage' tests

# The broker-fault tests again and again (kill -9 of a broker without persistence under load
# with events.resend, broker restarts mid-stream, SIGKILLed gateways): any loss fails it.
SOAK_ROUNDS ?= 20
soak: $(STAMP)
	for i in $$(seq $(SOAK_ROUNDS)); do \
	  $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_resend.py \
	    tests/integration/test_publisher.py tests/integration/test_outbox.py \
	    tests/integration/test_spine.py -k 'kill or restart or sigkill' || exit 1; done

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.all

# The compiled build for a fleet (gateway/build.py): a wheel for this machine's architecture
# and Python in dist/, with the per-observation path compiled by mypyc (needs gcc and the
# Python headers; ~1 min here). Build it once per architecture, install it on every Pi.
wheel: $(STAMP)
	PRESENCE_GATEWAY_COMPILE=1 $(BIN)/pip wheel --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var build dist
