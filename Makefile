# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv, installs torch/torchvision (exact versions first, from the local wheel cache
# where there is one), then the project, and runs its job.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= data/demo

.PHONY: demo test venv clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $@ $(VENV)/.core

venv: $(VENV)/.core

demo: $(VENV)/.core
	@date +%s > $(VENV)/.demo-start
	$(BIN)/maskcls demo-data $(DEMO_DIR) --force
	$(BIN)/maskcls eda $(DEMO_DIR)/train --eval $(DEMO_DIR)/eval --out reports/eda
	$(BIN)/maskcls train --data $(DEMO_DIR)/train --config demo --out runs/demo --force
	$(BIN)/maskcls predict --run runs/demo --data $(DEMO_DIR)/eval
	$(BIN)/maskcls score runs/demo/submission.csv $(DEMO_DIR)/eval_answers.csv
	@echo "demo finished in $$(( $$(date +%s) - $$(cat $(VENV)/.demo-start) )) s (install excluded)"

# The web page's test drives Debian's chromium through chromedriver. On a fresh Debian machine, as root, install
# them once; where that cannot be done the test skips and says why, and the rest of `make test` still runs.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	      || echo "could not install chromium / chromium-driver: the browser test will be skipped"; \
	  else \
	    echo "chromium / chromedriver missing and not installable here (needs root and apt-get): the browser test will be skipped"; \
	  fi; \
	fi

test: $(VENV)/.all browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs/demo reports/eda $(DEMO_DIR)
