#!/usr/bin/env bash
# The main job, from a fresh Debian machine: installs what is missing, builds,
# brings up the lab network, runs the exchange, a feed handler and the load
# generator for a short run, prints the latency report, and tears the lab
# down (also when interrupted). Extra arguments go to `tokex demo`
# (e.g. --rate 20000 --duration 5 --transport udp).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh
cargo build --release
exec "${CARGO_TARGET_DIR:-target}/release/tokex" demo "$@"
