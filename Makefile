# Every target sets up what it needs: a virtual environment in .venv with the
# package and its test extra. pip takes torch from the machine's pip settings.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: demo test notebooks lab browser benchmark clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]' 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/python -c "import alrao_edu, torch, torchvision, plotly, ipywidgets"
	touch $(STAMP)

# The main job: Alrao beside SGD at a grid of rates and Adam on the embedded digits.
demo: $(STAMP)
	$(BIN)/alrao-edu compare --dataset digits --arch cnn --epochs 10 --seeds 0,1,2 --out runs/demo

# Chromium from Debian's packages, for the browser test (needs root or sudo).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

test: $(STAMP) browser
	ALRAO_EDU_QUICK=1 $(BIN)/python -m pytest -q

notebooks: $(STAMP)
	ALRAO_EDU_QUICK=1 $(BIN)/python -m pytest -q --nbval-lax notebooks

lab: $(STAMP)
	$(BIN)/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks

benchmark: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py

clean:
	rm -rf $(VENV) runs build *.egg-info
