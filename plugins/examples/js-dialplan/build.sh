#!/bin/sh
# Build the JavaScript example dial plan into a WebAssembly component:
#
#     plugins/examples/js-dialplan/build.sh
#
# writes plugins/examples/js-dialplan/dist/dialplan.wasm (git-ignored). Needs
# node 20+ and npm; the tools are installed at the versions package-lock.json
# pins (`npm install`: unlike `npm ci` it tolerates a lock file that lists no
# entries for other platforms' optional native packages).
# Every optional WASI feature of the JavaScript engine is disabled, so the
# component imports little beyond `pbx:plugin` (see README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm install --no-audit --no-fund
fi
mkdir -p dist
node_modules/.bin/componentize-js dialplan.js \
    --wit ../../../wit \
    --world-name dialplan \
    --disable stdio random clocks http fetch-event \
    --out dist/dialplan.wasm
echo "wrote $here/dist/dialplan.wasm ($(wc -c < dist/dialplan.wasm) bytes)"
