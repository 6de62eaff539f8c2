# One job per recipe. `make serve` sets everything up and runs the bundled example;
# `make test` runs every test (what CI runs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SLUM := $(BIN)/slum

.PHONY: setup lock serve test test-fast lint spa dashboard spa-test dist binary bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Installs exactly the pinned, hashed versions of requirements-dev.lock, then slum itself.
setup: $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .

# After a change to pyproject.toml's dependencies: re-resolve both lock files (pins that still
# fit are kept; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest versions).
LOCK = $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
  --no-emit-find-links --no-emit-trusted-host $(LOCK_FLAGS)
lock: $(BIN)/python
	$(BIN)/pip install -q pip-tools
	$(LOCK) -o requirements.lock pyproject.toml
	$(LOCK) --extra dev -o requirements-dev.lock pyproject.toml

serve: setup dashboard
	@test -f slum.db || { (umask 077; $(SLUM) token-gen --database slum.db > .slum-token) && \
	  echo "API token written to .slum-token (use: SLUM_TOKEN=\$$(cat .slum-token))"; }
	$(SLUM) serve --config examples/notes/tenement.toml --database slum.db --port 8080

# Everything: lint, types, layers; the dashboard's own checks; unit, e2e and browser tests;
# then the single binary, its smoke test and the e2e tests that run against it.
test: setup spa
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd spa && npm run check && npm test
	$(BIN)/pytest -q -m "not binary"
	$(MAKE) binary
	build/smoke.sh dist/slum
	SLUM_BIN=$(CURDIR)/dist/slum $(BIN)/pytest -q -m binary

test-fast:
	$(BIN)/pytest -q -m "not slow and not browser and not binary"

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

spa:
	cd spa && npm ci --no-audit --no-fund && npm run build

# The dashboard when it is not built yet and npm is here; slum runs without it otherwise.
dashboard:
	@if [ -f src/slum/web/static/index.html ]; then :; \
	elif command -v npm >/dev/null 2>&1; then $(MAKE) spa; \
	else echo "npm not found: slum will serve without the dashboard"; fi

spa-test:
	cd spa && npm run check && npm test

dist: setup spa binary

binary:
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath dist \
	  --workpath build/work slum.spec

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf build/work dist src/slum/web/static .pytest_cache .mypy_cache .ruff_cache
