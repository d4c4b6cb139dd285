# straightflow: the two commands of the README are `make demo` and `make test`.
# Both create .venv and install the package into it first (idempotent).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.13.0, CPU build: PyPI's Linux wheel is the CUDA one, so pip also looks in PyTorch's
# CPU index, whose 2.13.0+cpu outranks it. CUDA: TORCH_INDEX=https://download.pytorch.org/whl/cu126
# (that CUDA version), or TORCH_INDEX= (PyPI's default build). Extra, not the only index: pip's
# own configuration (indexes, --find-links) still applies. --no-deps: torch's dependencies come
# from the usual indexes with the package's, on the next line.
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo test docs bench bench-lines bench-teacher report experiments-page clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-deps $(if $(TORCH_INDEX),--extra-index-url "$(TORCH_INDEX)") "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/straightflow demo --out demo_out

# lint and the import-layer contract (.importlinter) run before the tests, in CI too; the tests run
# on TEST_WORKERS processes (pytest-xdist) and list the 15 slowest at the end
TEST_WORKERS ?= 2
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=15 tests

# the documentation site (mkdocs.yml): MkDocs + Material, the API reference from the docstrings (mkdocstrings);
# --strict fails the build on a broken link, a missing anchor or an unresolved reference. Output: site/
$(VENV)/.docs: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# torchcfm is installed without its dependencies: torchdyn would pull torchvision
# and a CUDA build of torch; the I-CFM loop needs only torch and POT.
$(VENV)/.bench: $(VENV)/.installed
	$(PY) -m pip install -q torchdiffeq absl-py
	$(PY) -m pip install -q --no-deps torchcfm
	touch $@

bench: $(VENV)/.bench
	$(PY) bench/bench_baseline.py $(BENCH_ARGS)

# the lines method vs its teacher and torchcfm's OT-CFM on the four 2D sets (about 20 minutes)
bench-lines: $(VENV)/.bench
	$(PY) bench/bench_lines.py $(BENCH_ARGS)

# any teacher: a torchcfm-trained moons model -> `straightflow pairs --teacher-callable` -> a lines student (about 2 minutes on 2 idle cores)
bench-teacher: $(VENV)/.bench
	$(PY) bench/torchcfm_teacher.py $(BENCH_ARGS)

# the papers' experiments, one HTML page and its Markdown twin (docs/report.md): report_quick/report.html
# (aimed at under 20 minutes on 2 cores); REPORT=full for the full-scale budgets of docs/experiments-full.md (hours)
REPORT ?= quick
report: $(VENV)/.bench
	$(VENV)/bin/straightflow report --$(REPORT) --out report_$(REPORT) $(REPORT_ARGS)

# docs/experiments.md is the --quick report's Markdown (figures in docs/figures/report/); rerun and commit both
experiments-page: $(VENV)/.bench
	$(VENV)/bin/straightflow report --quick --out report_quick --page docs/experiments.md $(REPORT_ARGS)

clean:
	rm -rf $(VENV) demo_out report_quick report_full report_smoke .cache site
