#!/usr/bin/env bash
# Create bench/.venv with llama-cpp-python built from source (CPU, native ISA),
# for bench/llamacpp_bench.py. Re-running is a no-op once it is installed.
#   bash bench/setup_llamacpp.sh            (PYTHON=python3.12 to pick an interpreter)
set -euo pipefail

VERSION=0.3.36
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3}"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PATH="$VENV/bin:$PATH"   # the build finds the venv's cmake/ninja through PATH

if python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
    echo "llama-cpp-python $VERSION already installed in $VENV"
    exit 0
fi

python -m pip install --upgrade pip
command -v cmake >/dev/null || python -m pip install cmake
command -v ninja >/dev/null || python -m pip install ninja

# Native CPU build; no curl (models are local files); skip the multimodal (mtmd) library.
export CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
echo "building llama-cpp-python $VERSION (CMAKE_ARGS=$CMAKE_ARGS); this can take 10-20 minutes"
python -m pip install --no-cache-dir --verbose "llama-cpp-python==$VERSION"

python -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__, 'installed in $VENV')"
