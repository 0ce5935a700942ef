#!/usr/bin/env bash
# Runs every cargo-deny check (advisories, bans, licenses, sources; see
# deny.toml) offline, against the RustSec advisory snapshot in
# deny/advisory-db. cargo-deny reads an advisory database from a git
# checkout, so the snapshot is committed into one under target/ first, dated
# as the snapshot is.
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=deny/advisory-db
date=$(sed -n 's/^date: //p' "$snapshot/SNAPSHOT")
# The directory cargo-deny derives from the database URL in deny.toml.
db=target/advisory-dbs/advisory-db-3157b0e258782691
rm -rf "$db"
mkdir -p "$db"
cp -R "$snapshot/crates" "$snapshot/LICENSE.txt" "$db/"
git -C "$db" init -q
git -C "$db" add -A
GIT_AUTHOR_DATE="$date" GIT_COMMITTER_DATE="$date" \
    git -C "$db" -c user.name=snapshot -c user.email=snapshot@localhost \
    commit -q -m "advisory-db snapshot $date"
echo "advisory database: snapshot of $date ($(find "$db/crates" -name '*.md' | wc -l) advisories)"
# cargo-deny reads the metadata of every platform's crates; a fresh machine
# has fetched only this platform's, so fetch them all first (the registry is
# reachable; the advisory database is not).
cargo fetch --locked
cargo deny --offline check
