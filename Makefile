# The two commands a new machine needs:
#   make demo   - install everything, start the stack and the platform for the demo city
#   make test   - install everything, start the stack, run linters and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo demo-down test lint stack stack-down install browser web

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "install Python 3.11 first"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The browser libraries the cockpit serves (ECharts), from the npm registry, pinned by
# the lock file; the API serves them itself, never from a CDN.
WEB := cockpit_api/web
web: $(WEB)/node_modules/.installed

$(WEB)/node_modules/.installed: $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "install Node.js and npm first (apt-get install npm)"; exit 1; }
	npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error
	touch $@

# Always run: it keeps an existing env file and adds only the secrets it lacks.
.PHONY: .env
.env: | $(VENV)/.installed
	@$(BIN)/cityops secrets init --env-file .env

stack: $(VENV)/.installed .env
	$(BIN)/cityops stack up
	$(BIN)/cityops db migrate

stack-down: $(VENV)/.installed .env
	$(BIN)/cityops stack down

demo: $(VENV)/.installed .env web
	$(BIN)/cityops demo up

demo-down: $(VENV)/.installed .env
	$(BIN)/cityops demo down

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (never a browser a tool downloads), with
# CJK fonts so that Chinese renders as a Chinese user sees it.
browser:
	@{ command -v chromium >/dev/null && fc-list :lang=zh 2>/dev/null | grep -q .; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; \
	  else echo "error: install Debian's chromium and fonts-noto-cjk (sudo apt-get install chromium fonts-noto-cjk)" >&2; exit 1; fi; }

# pytest exits 5 when it ran no test: that is a failure here, never a pass.
test: stack lint browser web
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest ran no tests" >&2; exit 1; fi; \
	exit $$rc
