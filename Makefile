# Every target sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.roots-edge-installed
# Torch first and pinned: an unpinned torch can pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

# Optimum is a peer, not a dependency: it pins transformers < 4.58, so it lives in a venv of its own,
# used by the tests that load optimum's exports in our runtime.
PEER       := .venv-optimum
PEER_STAMP := $(PEER)/.installed
OPTIMUM    ?= optimum-onnx[onnxruntime]==0.1.0

.PHONY: setup demo test clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	touch $(STAMP)

$(PEER_STAMP):
	test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/python -m pip install --quiet "$(TORCH)"
	$(PEER)/bin/python -m pip install --quiet "$(OPTIMUM)"
	touch $(PEER_STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/roots-edge demo

test: $(STAMP) $(PEER_STAMP)
	ROOTS_EDGE_OPTIMUM_CLI=$(abspath $(PEER))/bin/optimum-cli $(BIN)/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV) $(PEER)
