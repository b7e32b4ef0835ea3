# Two commands on a fresh machine: `make demo` and `make test` (each creates .venv and fetches
# data as needed; re-running is cheap because every step is stamped).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_STAMP := data/.fetched
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: venv data test test-all demo clean-runs

venv: $(STAMP)

# Pinned CPU stack installed with --no-deps: torchrec's metadata asks for the CUDA fbgemm-gpu,
# which cannot load without an NVIDIA driver; the lock carries fbgemm-gpu-cpu instead.
$(STAMP): requirements/lock-cpu.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=70" wheel
	$(PY) -m pip install -q --no-deps -r requirements/lock-cpu.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

data: $(DATA_STAMP)

$(DATA_STAMP): $(STAMP) recsys_committee/fetch.py recsys_committee/data/logs/downloads.py vision_committee/downloads.py
	$(PY) -m recsys_committee.data.logs.downloads
	$(PY) -m vision_committee.downloads
	touch $@

# The data is fetched first, so a data-backed test that finds a file missing fails (the fetch or
# a path broke) instead of skipping: DD_REQUIRE_DATA=1 (tests/needs_data.py).
test: $(DATA_STAMP)
	DD_REQUIRE_DATA=1 $(PY) -m pytest -m "not slow" -q

test-all: $(DATA_STAMP)
	DD_REQUIRE_DATA=1 $(PY) -m pytest -q

demo: $(DATA_STAMP)
	$(PY) -m recsys_committee demo --out runs/demo
	$(PY) -m vision_committee demo --out runs/vision_demo

clean-runs:
	rm -rf runs
