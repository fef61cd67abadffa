# berth: set-up, tests, demo and benches. Run as root on Debian 12.
#   make demo    install everything, then run a container with berth-oci
#   make test    install everything, then run the unit and integration tests
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Debian's python: fast start-up, and the one whose site-packages hold pytest/jsonschema.
SYSTEM_PYTHON := /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := build/stamps
ROOTFS := build/rootfs/busybox
# The suite's budget is 20 minutes on 2 cores; a run past it fails instead of hanging CI.
TEST_TIMEOUT ?= 1200
PYTEST_ARGS ?=

.PHONY: help deps venv install-bin rootfs demo test unit integration bench clean distclean

help:
	@echo "make demo        set up (deps, venv, berth-oci) and run a busybox container"
	@echo "make test        set up, then run tests/unit and tests/integration"
	@echo "make deps        apt packages, podman config, .venv (idempotent)"
	@echo "make install-bin install the berth-oci launcher into /usr/local/bin"
	@echo "make bench       berth-oci vs runc start-up benchmark -> bench/RESULTS.md"
	@echo "make clean       remove build/ (rootfs, stamps)"

deps: $(STAMPS)/apt $(STAMPS)/peers $(STAMPS)/venv

# The apt stamp is only a shortcut: tools/deps.sh itself checks each package and
# calls apt-get only for missing ones.
$(STAMPS)/apt: tools/deps.sh
	tools/deps.sh
	@mkdir -p $(@D) && touch $@

$(STAMPS)/peers: tools/setup-peers.sh $(STAMPS)/apt
	tools/setup-peers.sh
	@mkdir -p $(@D) && touch $@

venv: $(STAMPS)/venv

# --no-build-isolation uses Debian's setuptools, so the editable install needs no download.
$(STAMPS)/venv: pyproject.toml $(STAMPS)/apt
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation -e '.[test]'
	@mkdir -p $(@D) && touch $@

install-bin: deps
	$(PY) -m berth.runtime.install

rootfs: $(STAMPS)/apt
	tools/mkrootfs-busybox.sh $(ROOTFS)

demo: deps install-bin rootfs
	$(PY) tools/demo.py $(ROOTFS)

# One pytest run, unit tests first; exit 5 (nothing collected) is a failure with a reason.
test: deps install-bin rootfs
	@rc=0; timeout -k 30 $(TEST_TIMEOUT) $(PY) -m pytest -q -p no:cacheprovider --durations=10 \
		tests/unit tests/integration $(PYTEST_ARGS) || rc=$$?; \
	case $$rc in \
	0) ;; \
	5) echo "make test: pytest collected no tests; that is a failure" >&2 ;; \
	124|137) echo "make test: the suite ran past $(TEST_TIMEOUT) s and was stopped" >&2 ;; \
	*) echo "make test: pytest failed (exit $$rc)" >&2 ;; \
	esac; \
	exit $$rc

unit: deps
	$(PY) -m pytest -q -p no:cacheprovider tests/unit $(PYTEST_ARGS)

integration: deps install-bin rootfs
	$(PY) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

# Each bench script takes BENCH_ARGS (e.g. BENCH_ARGS="--only runc -n 10").
BENCHES := bench/oci_run.py bench/pull.py

bench: deps install-bin rootfs
	@for b in $(BENCHES); do echo "== $$b"; $(PY) $$b $(BENCH_ARGS) || exit $$?; done

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV) src/*.egg-info
