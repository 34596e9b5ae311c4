#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting and lints,
# then runs every unit, integration and property test (the lab-network tests
# need root: they create and remove their own network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
