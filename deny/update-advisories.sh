#!/usr/bin/env bash
# Refreshes the advisory snapshot in deny/advisory-db from the RustSec
# database (needs network). Commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q --depth 1 https://github.com/rustsec/advisory-db "$tmp/db"
rm -rf deny/advisory-db/crates
cp -R "$tmp/db/crates" "$tmp/db/LICENSE.txt" deny/advisory-db/
{
    echo "source: https://github.com/rustsec/advisory-db"
    echo "commit: $(git -C "$tmp/db" rev-parse HEAD)"
    echo "date: $(git -C "$tmp/db" show -s --format=%cI HEAD)"
} > deny/advisory-db/SNAPSHOT
