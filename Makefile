# Two commands do everything on a fresh machine: `make site` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Extra options for the build, e.g. make site ARGS="--profile gpu --posts matmul"
ARGS   ?=

.PHONY: setup site render test test-unit test-posts lint bench clean

$(STAMP): requirements.txt code/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name fromscratch \
		--display-name "Python (fromscratch)" >/dev/null
	touch $@

setup: $(STAMP)  ## virtual environment, pinned packages, Jupyter kernel

site: setup  ## execute every post (cpu profile by default) and render with Quarto if present
	$(BIN)/python -m fromscratch.site.build $(ARGS)

render: setup  ## render the executed notebooks already in _build/ (the publish job's last step)
	$(BIN)/python -m fromscratch.site.build --render-only $(ARGS)

test: setup lint  ## unit tests, site checks, and every post executed on the cpu profile
	$(BIN)/python -m pytest

test-unit: setup  ## everything but executing the posts
	$(BIN)/python -m pytest -m "not posts"

test-posts: setup
	$(BIN)/python -m pytest -m posts

lint: setup
	$(BIN)/ruff check .

bench: setup  ## benchmarks: JSON in benchmarks/results/, ratios against the reference library
	$(BIN)/python -m fromscratch.benchmarks

clean:
	rm -rf _build _site _site.new _site.old
