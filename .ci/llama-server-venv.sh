#!/usr/bin/env bash
# Installs llama-cpp-python's OpenAI-compatible server into a venv outside the clone: the real
# server that the remote backend's integration tests (crates/remote/tests) start on 127.0.0.1.
#
# Idempotent and cheap when warm: a stamp in the venv records the version and build flags, and a
# machine that has them skips everything. The wheel is built once per flag set into our own wheel
# folder (a cold build is ~15 minutes on 2 cores), so a rebuilt venv only reinstalls.
#
# Not GGML_NATIVE: on CPUs that advertise AMX (Sapphire Rapids VMs), -march=native compiles ggml's
# AMX kernels, which die with SIGILL (`tilezero`) in the server's worker threads. Explicit
# AVX2/FMA/F16C runs on any x86-64-v3 machine and is fast enough for a 135M model.
set -euo pipefail

VENV="${THINKSCOPE_LLAMA_VENV:-$HOME/.cache/thinkscope/llama-venv}"
VERSION=0.3.36
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
FLAGS+=" -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
FLAGS+=" -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF"
WANT="llama-cpp-python[server]==$VERSION $FLAGS"
STAMP="$VENV/.thinkscope-stamp"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] &&
  "$VENV/bin/python" -c "import llama_cpp.server.app" >/dev/null 2>&1; then
  echo "llama-cpp-python server: ready in $VENV"
  exit 0
fi

KEY=$(printf '%s' "$WANT" | sha256sum | cut -c1-12)
WHEELS="$HOME/.cache/thinkscope/wheels/llama-cpp-python-$VERSION-$KEY"
if ! compgen -G "$WHEELS/llama_cpp_python-*.whl" >/dev/null; then
  echo "llama-cpp-python server: building the wheel (cold: ~15 minutes on 2 cores)"
  rm -rf "$WHEELS.part"
  # --no-cache-dir: pip's own wheel cache is keyed by the source, not by CMAKE_ARGS, and may hold a
  # wheel built with other flags.
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    python3 -m pip wheel --quiet --no-deps --no-cache-dir -w "$WHEELS.part" \
    "llama-cpp-python==$VERSION"
  mv "$WHEELS.part" "$WHEELS"
fi

echo "llama-cpp-python server: installing into $VENV"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --find-links "$WHEELS" \
  --only-binary=llama-cpp-python "llama-cpp-python[server]==$VERSION"
"$VENV/bin/python" -c "import llama_cpp.server.app"
printf '%s' "$WANT" >"$STAMP"
echo "llama-cpp-python server: ready in $VENV"
