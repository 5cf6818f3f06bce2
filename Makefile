# Two commands for a newcomer: `make demo` and `make test`.  Both create .venv and
# install everything on first use (pip, because torch==2.13.0 comes as a CPU wheel
# that uv and poetry do not see).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
# The suite pins what changes low bits: one BLAS/OpenMP thread (in every worker).
THREADS := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
# make test checks what CI checks: the derandomized ci profile (make quick: its own, quick).
export HYPOTHESIS_PROFILE ?= ci
# pytest-xdist: one worker per core; an idle worker takes tests from a busy one.
WORKERS ?= auto
XDIST := -n $(WORKERS) --dist worksteal

.PHONY: install demo test quick quick-proof lint typecheck pytest bench mutations distributed \
	determinism mutmut docs docs-serve clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bpnet fit --out $(OUT)/fit.png
	$(BIN)/bpnet compare --out $(OUT)/compare.png

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(THREADS) $(BIN)/python -m pytest $(XDIST) --durations=15 $(PYTEST_ARGS)

test: lint typecheck pytest

# seconds, not minutes: ruff and the tests of the files changed since the last commit
# (QUICK_ARGS="--since main" for a branch), see tests/quick.py
quick: $(STAMP)
	$(THREADS) $(BIN)/python -m tests.quick $(QUICK_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench.py

# every curated mistake (tests/mutations.py) and the five planted in check --all, each on its
# own copy of the project, in parallel; ends with the table: mutation, caught by, seconds
mutations: $(STAMP)
	$(THREADS) $(BIN)/python -m pytest $(XDIST) -m mutation $(PYTEST_ARGS) \
		tests/test_mutations.py tests/test_check_all.py

# every curated mistake against what make quick runs for its file: the quick map catches each
quick-proof: $(STAMP)
	$(THREADS) $(BIN)/python -m pytest $(XDIST) -m quickproof $(PYTEST_ARGS) \
		tests/test_mutations.py

# the mechanism that spreads the suite over machines (README, "Tests"), shown on this one:
# two interpreters started by execnet, as --tx ssh=HOST//python=... starts them elsewhere
distributed: $(STAMP)
	$(THREADS) $(BIN)/python -m pytest --tx 2*popen//python=$(BIN)/python --dist load \
		$(PYTEST_ARGS)

# the same examples whatever the workers: the suite twice, -n 1 and -n 2, every Hypothesis
# test case recorded (tests/determinism.py) and compared; about 15 minutes on 2 cores
DETERMINISM := $(OUT)/determinism
determinism: $(STAMP)
	rm -rf $(DETERMINISM)
	for n in 1 2; do \
		DETERMINISM_OUT=$(DETERMINISM)/n$$n HYPOTHESIS_EXPERIMENTAL_OBSERVABILITY_NOCOVER=1 \
		$(THREADS) $(BIN)/python -m pytest -n $$n -p tests.determinism -q $(PYTEST_ARGS) \
		|| exit 1; done
	$(BIN)/python -m tests.determinism $(DETERMINISM)/n1 $(DETERMINISM)/n2

# the documentation site (mkdocs.yml) in $(OUT)/site; --strict makes every warning an error: a
# broken link or anchor, an unresolved reference, a docstring that does not parse.  The
# Material theme's banner about its own end of life is not about these docs: silenced.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
docs: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --site-dir $(OUT)/site

# the same site at http://127.0.0.1:8000, rebuilt on every edit of docs/ or mkdocs.yml
docs-serve: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs serve --strict

mutmut: $(STAMP)
	$(BIN)/python -m pip install mutmut
	HYPOTHESIS_PROFILE=dev $(BIN)/mutmut run

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache .hypothesis .cache mutants
