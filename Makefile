# The two commands a new machine needs:
#   make demo   - install everything, start the stack and the platform for the demo city
#   make test   - install everything, start the stack, run linters and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo demo-down test lint stack stack-down install browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "install Python 3.11 first"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
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

demo: $(VENV)/.installed .env
	$(BIN)/cityops demo up

demo-down: $(VENV)/.installed .env
	$(BIN)/cityops demo down

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The browser tests drive Debian's Chromium (never a browser a tool downloads).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "error: install Debian's chromium (sudo apt-get install chromium)" >&2; exit 1; fi; }

# pytest exits 5 when it ran no test: that is a failure here, never a pass.
test: stack lint browser
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest ran no tests" >&2; exit 1; fi; \
	exit $$rc
