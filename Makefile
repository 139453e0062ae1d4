# Single entry point. `make book` sets up .venv (if needed) and builds the book on the quick profile;
# `make test` runs the test suite. Variables: PROFILE (quick|paper|path), DATA_ROOT, PYTHON, TORCH_PKGS.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
# torch/torchvision pinned for reproducibility; override on machines with their own CUDA build, e.g.
#   make setup TORCH_PKGS="torch torchvision"
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup book chapter test install-smoke lab screenshots clean-book clean-results

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PKGS)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: setup
	$(PY) -m helpers.book --profile $(PROFILE)

# one chapter without the HTML build, e.g. `make chapter NAME=01_data`
chapter: setup
	$(PY) -m helpers.book --profile $(PROFILE) --only $(NAME) --no-build

test: setup
	$(PY) -m pytest -q

# `pip install .` alone gives a working library: wheel -> fresh venv (no requirements.txt) -> data, metric, FU
install-smoke:
	PYTHON="$(PYTHON)" TORCH_PKGS="$(TORCH_PKGS)" bash .ci/install_smoke.sh

# the built book in headless Chromium (every page checked: images, links, tracebacks, code shown outside a toggle,
# tables wider than the page) + a screenshot of every chapter of _toc.yml: results/screenshots/<chapter>.png and
# <chapter>_figure.png (the chapter's name without its number, e.g. correlation.png)
screenshots: setup
	$(PY) -m helpers.browsercheck _build/html --chapter-screenshots results/screenshots

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean-book:
	rm -rf _build book/executed

clean-results:
	rm -rf results/$(PROFILE)
