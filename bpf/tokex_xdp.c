// SPDX-License-Identifier: GPL-2.0
//
// tokex's XDP program, attached to the exchange-side interface (and, for
// the AF_XDP load generator, to the client-side one).
//
// IPv4/UDP datagrams to the interface's address (`tokex_local`) and one of
// the ports listed in `tokex_ports` (the gateway port; the load generator's
// session ports) without IP options or fragmentation go to the AF_XDP
// socket bound to the receive queue;
// everything else -- ARP, ICMP, TCP (the SoupBinTCP compatibility port),
// market-data retransmission requests -- passes to the kernel, so the
// namespace keeps working while tokex owns the order port. When no
// socket is in the map (the exchange has stopped or crashed), order
// datagrams pass to the kernel too.
//
// Built by build.rs with `clang -target bpf`; loaded by src/net/xdp_prog.rs.
// Helpers and map macros are declared here rather than taken from
// libbpf's bpf_helpers.h so that the build needs only the kernel UAPI
// headers (linux-libc-dev).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

// Receive queue index -> AF_XDP socket.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} tokex_xsks SEC(".maps");

// By UDP destination port (host byte order): 1 = to the socket (set by the
// loader). An array, so the check is one indexed load.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} tokex_ports SEC(".maps");

// Entry 0: the IPv4 address (network byte order) the socket serves, set by
// the loader; datagrams to any other address (broadcast, multicast,
// another local address) pass to the kernel.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} tokex_local SEC(".maps");

// Per-CPU counters: 0 = redirected to the socket, 1 = passed to the kernel.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tokex_stats SEC(".maps");

static __attribute__((always_inline)) int count(__u32 slot, int action)
{
	__u64 *n = bpf_map_lookup_elem(&tokex_stats, &slot);
	if (n)
		*n += 1;
	return action;
}

SEC("xdp")
int tokex_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 dport;
	__u32 zero = 0;
	__u32 *wanted, *local;
	int action;

	if ((void *)(udp + 1) > end)
		return count(1, XDP_PASS);
	if (eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return count(1, XDP_PASS);
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return count(1, XDP_PASS);
	if (ip->frag_off & __builtin_bswap16(0x3fff))
		return count(1, XDP_PASS);
	local = bpf_map_lookup_elem(&tokex_local, &zero);
	if (!local || ip->daddr != *local)
		return count(1, XDP_PASS);
	dport = __builtin_bswap16(udp->dest);
	wanted = bpf_map_lookup_elem(&tokex_ports, &dport);
	if (!wanted || !*wanted)
		return count(1, XDP_PASS);
	/* XDP_PASS when no socket is bound to this queue (another queue's
	 * traffic on a multi-queue NIC): counted where it went. */
	action = bpf_redirect_map(&tokex_xsks, ctx->rx_queue_index, XDP_PASS);
	return count(action == XDP_REDIRECT ? 0 : 1, action);
}

char _license[] SEC("license") = "GPL";
