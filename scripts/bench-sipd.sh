#!/usr/bin/env bash
# Side-by-side SIP proxy benchmark: sipp uac -> PROXY -> sipp uas over UDP on 127.0.0.1, PROXY =
# chaincall sipd and Kamailio 5.6 in the same run (alternating step by step), stepping the call rate
# up; then REGISTER with digest auth against one Kamailio-schema subscriber table (SQLite).
# A step passes at >= 99.9 % successful calls. See crates/sipd/BENCH.md.
# --location postgres --servers kamailio: Kamailio with usrloc db_mode=3 and auth_db on a throwaway
# PostgreSQL the bench starts (sipd's PostgreSQL location is not in the bench yet).
#
# This is a thin wrapper: the benchmark itself is `chaincall bench sipd` (crates/bench/src/sipd.rs),
# present in a chaincall built with `--features bench` (a CHAINCALL binary must be built so too).
# Usage: scripts/bench-sipd.sh [--json] [--rates 500,1000,...] [--register-rates ...] [--secs 10] ...
# Env:   CARGO_TARGET_DIR (default: target); CHAINCALL=path/to/chaincall skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ -z "${CHAINCALL:-}" ]; then
  cargo build --release -q -p chaincall --features bench
  CHAINCALL="$CARGO_TARGET_DIR/release/chaincall"
fi
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }
exec "$CHAINCALL" bench sipd "$@"
