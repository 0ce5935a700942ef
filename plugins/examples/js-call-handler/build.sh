#!/bin/sh
# Build the JavaScript example call handler into a WebAssembly component:
#
#     plugins/examples/js-call-handler/build.sh
#
# writes plugins/examples/js-call-handler/dist/call-handler.wasm (git-ignored).
# Needs node 20+ and npm; the tools are installed at the versions
# package-lock.json pins (the same as js-dialplan's; `npm install`: unlike
# `npm ci` it tolerates a lock file that lists no entries for other platforms'
# optional native packages).
# The WIT is version 0.2 (`wit/v0.2`); its `deps/` directory brings the 0.1
# interfaces the world imports. Every optional WASI feature of the JavaScript
# engine is disabled, so the component imports little beyond `pbx:plugin`
# (see README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if [ ! -x node_modules/.bin/componentize-js ]; then
    npm install --no-audit --no-fund
fi
mkdir -p dist
node_modules/.bin/componentize-js call-handler.js \
    --wit ../../../wit/v0.2 \
    --world-name call-handler \
    --disable stdio random clocks http fetch-event \
    --out dist/call-handler.wasm
echo "wrote $here/dist/call-handler.wasm ($(wc -c < dist/call-handler.wasm) bytes)"
