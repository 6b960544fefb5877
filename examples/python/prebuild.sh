#!/bin/sh
# Builds a Python handler ahead of time, for connections that cost a few
# milliseconds instead of an interpreter start-up (~45 ms of CPU):
# componentize-py bundles CPython, its standard library and the script's
# folder into one WASI preview 2 component (`wasi:cli/command`), runs the
# interpreter's start-up and imports MODULE at build time, and snapshots the
# result. wasinetd serves it as any other guest (`server = OUT.wasm`, no
# `server_args`, no `preopen` needed for the code); each connection gets a
# fresh copy-on-write instance of the snapshot and calls MODULE.main().
#
#   examples/python/prebuild.sh APP_DIR MODULE OUT.wasm
#   examples/python/prebuild.sh examples/python/app hello examples/python/build/hello.wasm
#
# MODULE's top level runs once, here, at build time (imports, constants);
# main() runs per connection, with the connection as stdin/stdout and the
# service's env, preopens and limits. Build-time state is the same for every
# connection: do not seed anything secret at import time (os.urandom in
# main() is fresh per connection).
#
# Needs python3 with pip and venv; installs componentize-py 0.25.1 (PyPI)
# into $COMPONENTIZE_PY_VENV (default ~/.cache/wasinetd/componentize-py-0.25.1).
set -eu

if [ $# -ne 3 ]; then
	echo "usage: $0 APP_DIR MODULE OUT.wasm" >&2
	exit 2
fi
app=$(cd "$1" && pwd)
module=$2
out=$3
case $module in
	*[!A-Za-z0-9_]* | [0-9]* | "") echo "prebuild.sh: \`$module\` is not a Python module name" >&2; exit 2 ;;
esac
[ -f "$app/$module.py" ] || { echo "prebuild.sh: no $app/$module.py" >&2; exit 2; }

VERSION=0.25.1
venv=${COMPONENTIZE_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wasinetd/componentize-py-$VERSION}
if [ ! -x "$venv/bin/componentize-py" ]; then
	python3 -m venv "$venv"
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$VERSION"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
# The component's entry point, wasi:cli/run: the script's main() per run.
cat > "$tmp/wasinetd_handler.py" <<PY
import sys

import $module as handler
from wit_world import exports


class Run(exports.Run):
    def run(self) -> None:
        try:
            handler.main()
        finally:
            sys.stdout.flush()
PY
# A copy of the app: componentize-py leaves __pycache__ folders behind.
mkdir -p "$tmp/app" "$(dirname "$out")"
cp -R "$app/." "$tmp/app/"
# The world (wit/world.wit here) and the WASI WIT it includes (the
# repository's wit/deps).
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$tmp/wit"
cp "$here/wit/world.wit" "$tmp/wit/"
cp -R "$here/../../wit/deps" "$tmp/wit/deps"
wit=$tmp/wit
(cd "$tmp" && "$venv/bin/componentize-py" --quiet -d "$wit" -w handler componentize \
	-p "$tmp" -p "$tmp/app" wasinetd_handler -o "$tmp/out.wasm")
mv "$tmp/out.wasm" "$out"
echo "built $out from $app/$module.py" >&2
