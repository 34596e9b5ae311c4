#!/usr/bin/env bash
# Installs every system package tokex needs on a fresh Debian machine (run as root).
# Idempotent: packages already present are skipped by apt-get.
set -euo pipefail

PKGS=(
  # xsk-rs builds libbpf/libxdp from source through libxdp-sys
  libelf-dev zlib1g-dev clang llvm pkg-config m4 libpcap-dev build-essential
  # the lab network and packet-loss injection (procps: sysctl in the
  # namespaces)
  iproute2 nftables iputils-ping ethtool procps
  # conformance tests decode our pcaps with Wireshark's dissectors
  tshark tcpdump
  # instruction counts for hot-path changes
  valgrind
  # a TrueType font for the text in the PNG latency plots
  fonts-dejavu-core
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "tokex: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer once, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "tokex: system packages already installed"
fi

# The test command checks formatting and lints: a toolchain installed with
# rustup's minimal profile has neither component.
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
