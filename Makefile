# cpcbench: `make demo` and `make test` set everything up themselves (idempotent, fast when nothing changed).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
STAMP := $(VENV)/.setup-stamp
# Debian packages for headless rendering (EGL via Mesa's llvmpipe; OSMesa as the fallback).
APT_PKGS := libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libglu1-mesa libosmesa6
export PYOPENGL_PLATFORM ?= egl
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo reproduce probes tables test test-slow bench bench-smoke lint clean-runs system-deps

setup: system-deps $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing Debian packages for headless rendering: $$missing"; \
	    apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages for headless rendering: $$missing -- run: sudo apt-get install $$missing"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[dev]"
	@# pyrender pins PyOpenGL 3.1.0, which lacks OSMesaCreateContextAttribs (the OSMesa fallback); 3.1.10
	@# works for EGL and OSMesa. pip then warns about pyrender's pin: harmless.
	@$(PIP) PyOpenGL==3.1.10 2>&1 | grep -vE "pyrender 0.1.45 requires|dependency resolver does not" || true
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m harness.demo

# the study (harness/study.py; records -> results/, tables -> leaderboards/) in resumable stages of < 3 h each on
# 2 cores: all of them, or e.g. `make reproduce STAGE=data` (data, pretrain-body, pretrain-hand, finetune, probes,
# tables; a comma list runs several); `make reproduce STAGE=data DRY=1` lists the commands only
reproduce: setup
	$(BIN)/python -m harness.reproduce $(if $(STAGE),--stage $(STAGE)) $(if $(DRY),--dry-run)

# the study's frozen-feature probes and learning curves only (needs its data and pretraining stages)
probes: setup
	$(BIN)/python -m harness.reproduce --stage probes

# regenerate every table, plot and the HTML page under leaderboards/ from results/
tables: setup
	$(BIN)/cpcbench tables --paper --results results --out leaderboards

test: setup
	$(BIN)/python -m pytest -q -m "not slow and not bench"

test-slow: setup
	$(BIN)/python -m pytest -q -m "slow"

# the speed table of the step benchmarks goes to docs/speed.md (the README's speed section is copied from it)
bench: setup
	CPCBENCH_BENCH_OUT=docs/speed.md $(BIN)/python -m pytest -q -m bench --benchmark-columns=min,mean,rounds -s

# every benchmark once at tiny sizes, one round, no timings asserted (CI: a broken benchmark fails the build)
bench-smoke: setup
	CPCBENCH_BENCH_SMOKE=1 $(BIN)/python -m pytest -q -m bench

lint: setup
	$(BIN)/ruff check .

clean-runs:
	rm -rf runs
