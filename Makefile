# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv (when it does not exist yet), installs torch/torchvision first (exact versions; a .venv
# made beforehand with PyTorch's CPU wheels keeps them), then the project with its extras, and runs its job.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEMO_DIR ?= data/demo
# mkdocs writes the site here (git-ignored), never to a committed ./site
SITE_DIR ?= build/site
BROWSER_PACKAGES := chromium chromium-driver

.PHONY: demo test venv clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)

# The torch training stack: what `make demo` runs.
$(VENV)/.train: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[train]"
	touch $@

# Every extra plus the dev tools (pytest, ruff, import-linter, mkdocs-material, selenium, httpx).
$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $@ $(VENV)/.train

venv: $(VENV)/.train

demo: $(VENV)/.train
	@date +%s > $(VENV)/.demo-start
	$(BIN)/maskcls demo-data $(DEMO_DIR) --force
	$(BIN)/maskcls eda $(DEMO_DIR)/train --eval $(DEMO_DIR)/eval --out reports/eda
	$(BIN)/maskcls train --data $(DEMO_DIR)/train --config demo --out runs/demo --force
	$(BIN)/maskcls predict --run runs/demo --data $(DEMO_DIR)/eval
	$(BIN)/maskcls score runs/demo/submission.csv $(DEMO_DIR)/eval_answers.csv
	@echo "demo finished in $$(( $$(date +%s) - $$(cat $(VENV)/.demo-start) )) s (install excluded)"

# The web page's test drives Debian's chromium through chromedriver (/usr/bin/chromium, /usr/bin/chromedriver).
# As root on Debian they are installed with apt-get, but only when that install would upgrade (or remove) no
# package already on the machine: a simulated `apt-get -s install` is read first (`Inst PKG [OLD] (NEW ...)` is an
# upgrade), since --no-upgrade alone would still upgrade the new packages' dependencies. Where they cannot be
# installed, the browser test skips and this says why; the rest of `make test` runs either way.
browser:
	@skip() { echo "browser test will be skipped: $$*"; exit 0; }; \
	if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	[ "$$(id -u)" = 0 ] || skip "chromium / chromedriver are missing and installing them needs root"; \
	command -v apt-get >/dev/null 2>&1 || skip "chromium / chromedriver are missing and there is no apt-get"; \
	apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"; \
	sim=$$(LC_ALL=C apt-get -s install --no-install-recommends $(BROWSER_PACKAGES) 2>&1) \
	  || skip "apt-get cannot install $(BROWSER_PACKAGES) here: $$(printf '%s\n' "$$sim" | tail -n 1)"; \
	upgrades=$$(printf '%s\n' "$$sim" | sed -n 's/^Inst \([^ ]*\) \[\([^]]*\)\].*/\1 (\2)/p' | tr '\n' ' '); \
	[ -z "$$upgrades" ] || skip "installing $(BROWSER_PACKAGES) would upgrade installed packages: $$upgrades"; \
	removals=$$(printf '%s\n' "$$sim" | sed -n 's/^Remv \([^ ]*\).*/\1/p' | tr '\n' ' '); \
	[ -z "$$removals" ] || skip "installing $(BROWSER_PACKAGES) would remove installed packages: $$removals"; \
	echo "installing $(BROWSER_PACKAGES) (no installed package is upgraded)"; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null \
	  || skip "apt-get install $(BROWSER_PACKAGES) failed"

test: $(VENV)/.all browser
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d $(SITE_DIR)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs/demo reports/eda $(DEMO_DIR) $(SITE_DIR)
