#!/usr/bin/env bash
# The lab network: two network namespaces joined by a veth pair.
#   tokex-ex  veth tkx-ex  198.18.0.1/24   (the exchange)
#   tokex-cl  veth tkx-cl  198.18.0.2/24   (clients, feed handlers)
# Multicast 239.198.0.0/16 is routed over the veth in both. Nothing here
# touches the default namespace's interfaces. Idempotent.
#
# usage: tools/lab.sh up|down|status
# LAB_PREFIX=name changes the names (namespaces NAME-ex/NAME-cl, veths
# NAME-ex/NAME-cl; interface names are cut to 15 characters) so tests can
# run their own lab beside the demo's. `down` first stops (SIGTERM, then
# SIGKILL after LAB_STOP_GRACE seconds, 5) every process still running in
# the namespaces, naming each.
set -euo pipefail

prefix=${LAB_PREFIX:-tokex}
ex_ns="$prefix-ex"
cl_ns="$prefix-cl"
if [ "$prefix" = tokex ]; then
  ex_if=tkx-ex
  cl_if=tkx-cl
else
  ex_if="${prefix:0:12}-ex"
  cl_if="${prefix:0:12}-cl"
fi

up() {
  command -v ethtool >/dev/null || { echo "lab up: ethtool is missing (bash tools/install-deps.sh installs it)" >&2; exit 1; }
  ip netns list | grep -qw "^$ex_ns" || ip netns add "$ex_ns"
  ip netns list | grep -qw "^$cl_ns" || ip netns add "$cl_ns"
  if ! ip -n "$ex_ns" link show "$ex_if" >/dev/null 2>&1; then
    ip link add "$ex_if" netns "$ex_ns" type veth peer name "$cl_if" netns "$cl_ns"
  fi
  for spec in "$ex_ns $ex_if 198.18.0.1" "$cl_ns $cl_if 198.18.0.2"; do
    set -- $spec
    ip -n "$1" link set lo up
    # No IPv6 chatter (router solicitations, DAD) on the lab link.
    ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
    ip -n "$1" addr replace "$3/24" dev "$2"
    ip -n "$1" link set "$2" up
    ip -n "$1" route replace 239.198.0.0/16 dev "$2"
    # Full UDP checksums in every frame: with transmit checksum offload on,
    # a veth hands its peer partial ones (the NIC would have finished
    # them), which the kernel's receive path accepts on trust but an
    # AF_XDP reader, checking them itself, must drop.
    ip netns exec "$1" ethtool -K "$2" tx off >/dev/null
  done
  # Where the client namespace's receive processing (acks and market data
  # arriving on the veth) runs: by default (LAB_CLIENT_CPUS=0, RPS off) on
  # the core that sent the packet, i.e. inside the exchange's send. A hex
  # CPU mask (1 = core 0) hands it to those CPUs through RPS instead, which
  # charges the clients' work to their own core but costs the sender an
  # inter-processor interrupt per packet: in a VM whose interrupt register
  # write exits to the hypervisor (the AMD VM of 2026-12-02) that doubled
  # the engine core's busy share at 10,000 orders/s (README, Performance).
  local cpus="${LAB_CLIENT_CPUS:-0}"
  if ! [[ "$cpus" =~ ^[0-9a-fA-F]+$ ]]; then
    echo "lab.sh: LAB_CLIENT_CPUS=$cpus is not a hex CPU mask" >&2
    exit 2
  fi
  local rps="RPS off: $cl_ns's receive runs on the sending core"
  if ! ip netns exec "$cl_ns" sh -c "echo $cpus > /sys/class/net/$cl_if/queues/rx-0/rps_cpus"; then
    rps="RPS not set (rps_cpus not writable): $cl_ns's receive runs on the sending core"
  elif [ "$cpus" != 0 ]; then
    rps="RPS to CPU mask $cpus for $cl_ns's receive"
  fi
  # tokex loads its XDP program without pinning anything in a bpffs
  # (src/net/xdp_prog.rs), so no mount is needed inside `ip netns exec`.
  echo "lab up: $ex_ns ($ex_if 198.18.0.1) <-> $cl_ns ($cl_if 198.18.0.2); $rps"
}

# Whether process $1 is still running (a zombie has stopped: only its
# parent's wait is missing).
alive() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  # The state follows the command name, which is in brackets and may
  # hold spaces.
  stat=${stat##*) }
  [[ ${stat:0:1} != [ZX] ]]
}

# Stops every process still running in the lab's namespaces: deleting a
# namespace does not end them, it only hides them (an exchange left that
# way spun on its core in a namespace nobody could see any more). SIGTERM
# first (tokex exchange then ends the session, lingers about 2 s for late
# retransmission requests and writes its report), then, after
# LAB_STOP_GRACE seconds (5), SIGKILL.
stop_processes() {
  local ns pid cmd pids=() grace="${LAB_STOP_GRACE:-5}"
  if ! [[ "$grace" =~ ^[0-9]+$ ]]; then
    echo "lab.sh: LAB_STOP_GRACE=$grace is not a number of seconds" >&2
    exit 2
  fi
  for ns in "$ex_ns" "$cl_ns"; do
    [ -e "/run/netns/$ns" ] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      alive "$pid" || continue
      cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || true
      echo "lab down: stopping pid $pid in $ns (SIGTERM): ${cmd% }"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    done
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local until=$((SECONDS + grace)) left=()
  while :; do
    left=()
    for pid in "${pids[@]}"; do
      if alive "$pid"; then left+=("$pid"); fi
    done
    [ ${#left[@]} -gt 0 ] || break
    if [ "$SECONDS" -ge "$until" ]; then
      for pid in "${left[@]}"; do
        echo "lab down: pid $pid still running after ${grace}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      done
      break
    fi
    sleep 0.1
  done
  echo "lab down: stopped ${#pids[@]} process(es) in the lab namespaces"
}

down() {
  stop_processes
  ip netns del "$ex_ns" 2>/dev/null || true
  ip netns del "$cl_ns" 2>/dev/null || true
  echo "lab down: $ex_ns $cl_ns removed"
}

status() {
  for ns in "$ex_ns" "$cl_ns"; do
    if ip netns list | grep -qw "^$ns"; then
      echo "== $ns"; ip -n "$ns" -brief addr
    else
      echo "== $ns: absent"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
