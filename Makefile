# Two commands do all the set-up on a fresh machine:
#   make demo   train a small STR model on Fashion-MNIST, report, save
#   make test   run the test suite on the TensorFlow, JAX and PyTorch backends
#   make docs   build the documentation site into site/ (strict: broken links fail)
#   make results  rewrite every benchmark table and plot from the committed rows
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
PYTEST_ARGS ?= -n 2
BACKENDS ?= tensorflow jax torch
# PyTorch's CPU build. Here pip's local wheel folder has torch 2.13.0+cpu, which
# `torch==2.13.0` picks; from PyPI that pin is the ~2.7 GB CUDA build, so
# elsewhere set TORCH_PIP_ARGS to `--index-url` and PyTorch's CPU wheel index.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: demo test test-all docs results data venv

$(VENV)/.installed: setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH)'
	$(VPY) -m pip install --quiet -e '.[all,test,docs]' jax '$(TORCH)'
	touch $@

venv: $(VENV)/.installed

# Debian's Fashion-MNIST is the offline copy; installed when missing and root.
data:
	@if [ ! -f $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	      || echo "warning: could not install dataset-fashion-mnist"; \
	  else \
	    echo "note: Fashion-MNIST is not on disk; as root: apt-get install dataset-fashion-mnist"; \
	  fi; \
	fi

demo: venv data
	$(VPY) -m examples.demo

# The sweeps whose tables are written from rows kept in benchmarks/results
# (tests/test_results_tables.py checks the committed tables are what this writes).
RESULT_SWEEPS := n_m_accuracy transformer_lm keras_hub_export keras_hub_zoo nonfinite_check_cost transformer_ffn_block

results: venv
	@for sweep in $(RESULT_SWEEPS); do \
	  echo "== python -m benchmarks.$$sweep --tables_only"; \
	  $(VPY) -m benchmarks.$$sweep --tables_only > /dev/null || exit 1; \
	done

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VPY) -m mkdocs build --strict --site-dir site

# One pytest run per Keras backend, in turn; tests marked `tensorflow` run on
# the TensorFlow backend only. $(1): pytest's arguments on TensorFlow, $(2): on
# the others. Every backend runs; the target fails if any run fails, including
# pytest's exit status 5 (no tests collected). Ends with one line per backend:
# wall time and pytest's summary.
define per_backend
	@log=$$(mktemp -d); failed=; \
	for backend in $(BACKENDS); do \
	  if [ $$backend = tensorflow ]; then set -- $(1); else set -- $(2); fi; \
	  echo "== KERAS_BACKEND=$$backend pytest $(PYTEST_ARGS) $$*"; \
	  start=$$(date +%s); \
	  { KERAS_BACKEND=$$backend $(VPY) -m pytest $(PYTEST_ARGS) "$$@"; \
	    echo $$? > $$log/$$backend.rc; } 2>&1 | tee $$log/$$backend.log; \
	  rc=$$(cat $$log/$$backend.rc); \
	  summary=$$(grep -E '^(=+ )?(no tests ran|[0-9]+ [a-z]+).* in [0-9.]+s' $$log/$$backend.log | tail -n 1 | sed 's/^=* *//; s/ *=*$$//'); \
	  case $$rc in \
	    0) status=ok;; \
	    5) status="FAILED: no tests collected"; failed="$$failed $$backend";; \
	    *) status="FAILED: pytest exit status $$rc"; failed="$$failed $$backend";; \
	  esac; \
	  echo "backend $$backend: $$(( $$(date +%s) - start )) s, $$summary ($$status)" >> $$log/summary; \
	done; \
	echo; cat $$log/summary; rm -r $$log; \
	if [ -n "$$failed" ]; then echo "tests failed on:$$failed"; exit 1; fi
endef

test: venv data
	$(call per_backend,-m "not slow" tests,-m "not slow and not tensorflow" tests)

test-all: venv data
	$(call per_backend,tests,-m "not tensorflow" tests)
