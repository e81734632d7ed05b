# gamed-console: `make run` starts the console, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ADDR ?= 127.0.0.1:8000
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/gamed
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_ARGS ?=

.PHONY: install run migrate test test-sqlite test-postgres lint check-services chromium bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

migrate: install
	$(BIN)/python manage.py migrate --no-input

# The demo lets runs inject faults into stages (GAMED_FAULT_INJECTION); production leaves it off.
run: migrate
	$(BIN)/python manage.py bootstrap_admin
	GAMED_FAULT_INJECTION=$${GAMED_FAULT_INJECTION:-true} $(BIN)/python manage.py console --addr $(ADDR)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Postgres and Redis must answer; outside CI a missing one only skips what needs it.
check-services: install
	@$(BIN)/python -m tests.services "$(TEST_POSTGRES_URL)" "$(TEST_REDIS_URL)"

# The browser tests drive Debian's Chromium; Playwright never downloads a browser here.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: lint check-services chromium test-sqlite test-postgres

test-sqlite: install
	env -u DATABASE_URL -u CHECKPOINT_DATABASE_URL -u REDIS_URL \
		TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install
	@if $(BIN)/python -m tests.services --quiet "$(TEST_POSTGRES_URL)"; then \
		env -u CHECKPOINT_DATABASE_URL -u REDIS_URL DATABASE_URL=$(TEST_POSTGRES_URL) \
			TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest $(PYTEST_ARGS); \
	else echo "Postgres not reachable at $(TEST_POSTGRES_URL): Postgres pass skipped"; fi

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
