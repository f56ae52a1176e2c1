// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The kernel half of lvsd's offload: a tc (clsact ingress) program for the director's
 * public and private interfaces that forwards the packets of connections lvsd has
 * already decided, without the two trips through the TUN device.
 *
 * Contract with lvsd (director/dataplane/offload.py):
 *   - `conns` maps a packet's <saddr, daddr, sport, dport, proto> as it arrives to the
 *     tuple it leaves with and the interface it leaves by. lvsd writes one entry per
 *     direction of an established VS-NAT connection (client -> VIP rewritten to the
 *     real, real -> client rewritten from the VIP) and deletes both when the connection
 *     leaves ESTABLISHED (TCP) or the table.
 *   - Everything else passes unchanged (TC_ACT_OK) to the kernel's routing and so to the
 *     TUN path: no entry, not IPv4, IP options, fragments, a TTL that would expire, a
 *     TCP segment with SYN, FIN or RST (they change the connection's state, which lvsd
 *     keeps), protocols other than TCP and UDP (ICMP included), and a packet too big for
 *     the egress MTU (the TUN path answers it with "fragmentation needed").
 *   - Each entry counts the packets (one per skb, as the TUN path counts one per read,
 *     GSO super-packets included) and IP bytes it forwarded and the last time it did
 *     (bpf_ktime_get_ns: CLOCK_MONOTONIC, lvsd's clock); lvsd folds them into its table.
 *
 * Checksums are patched incrementally by the skb helpers, which handle
 * CHECKSUM_PARTIAL (GSO and offloaded packets: only the pseudo-header's addresses
 * are folded in) and CHECKSUM_COMPLETE; a UDP checksum of 0 stays 0.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define IP_OFF (sizeof(struct ethhdr))
#define L4_OFF (IP_OFF + sizeof(struct iphdr))

struct flow_key {
    __u32 saddr; /* network byte order, as on the wire */
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 pad[3];
};

struct flow_val {
    __u32 saddr; /* the tuple the packet leaves with, network byte order */
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u32 ifindex; /* egress interface */
    __u32 slot;    /* lvsd's connection handle, for its own bookkeeping */
    __u64 packets;
    __u64 bytes;
    __u64 last_ns;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, 2); /* set by the loader: two per connection */
    __type(key, struct flow_key);
    __type(value, struct flow_val);
} conns SEC(".maps");

static __always_inline int rewrite(struct __sk_buff *skb, __u32 off, __u32 old, __u32 new,
                                   __u32 csum_off, __u64 l4flags) {
    if (old == new)
        return 0;
    if (bpf_l4_csum_replace(skb, csum_off, old, new, l4flags | BPF_F_PSEUDO_HDR | 4))
        return -1;
    if (bpf_l3_csum_replace(skb, IP_OFF + offsetof(struct iphdr, check), old, new, 4))
        return -1;
    return (int)bpf_skb_store_bytes(skb, off, &new, 4, 0);
}

static __always_inline int rewrite_port(struct __sk_buff *skb, __u32 off, __u16 old, __u16 new,
                                        __u32 csum_off, __u64 l4flags) {
    if (old == new)
        return 0;
    if (bpf_l4_csum_replace(skb, csum_off, old, new, l4flags | 2))
        return -1;
    return (int)bpf_skb_store_bytes(skb, off, &new, 2, 0);
}

SEC("tc")
int lvsd_offload(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return TC_ACT_OK;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end)
        return TC_ACT_OK;
    if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3FFF)) || ip->ttl <= 1)
        return TC_ACT_OK;
    struct flow_key k = {.saddr = ip->saddr, .daddr = ip->daddr, .proto = ip->protocol};
    __u32 csum_off;
    __u64 l4flags = 0;
    if (ip->protocol == IPPROTO_TCP) {
        struct tcphdr *th = (void *)(ip + 1);
        if ((void *)(th + 1) > end)
            return TC_ACT_OK;
        if (th->syn || th->fin || th->rst)
            return TC_ACT_OK;
        k.sport = th->source;
        k.dport = th->dest;
        csum_off = L4_OFF + offsetof(struct tcphdr, check);
    } else if (ip->protocol == IPPROTO_UDP) {
        struct udphdr *uh = (void *)(ip + 1);
        if ((void *)(uh + 1) > end)
            return TC_ACT_OK;
        k.sport = uh->source;
        k.dport = uh->dest;
        csum_off = L4_OFF + offsetof(struct udphdr, check);
        l4flags = BPF_F_MARK_MANGLED_0;
    } else {
        return TC_ACT_OK;
    }
    struct flow_val *v = bpf_map_lookup_elem(&conns, &k);
    if (!v)
        return TC_ACT_OK;
    __u32 ifindex = v->ifindex;
    __u32 mtu = 0;
    if (bpf_check_mtu(skb, ifindex, &mtu, 0, 0))
        return TC_ACT_OK;
    __u32 tot = bpf_ntohs(ip->tot_len);
    __u8 ttl = ip->ttl;
    __u32 saddr = ip->saddr, daddr = ip->daddr;
    __u16 sport = k.sport, dport = k.dport;
    /* The TTL shares a 16-bit checksum word with the protocol. */
    __u16 old_ttl = bpf_htons((__u16)ttl << 8 | k.proto);
    __u16 new_ttl = bpf_htons((__u16)(ttl - 1) << 8 | k.proto);
    __u8 nttl = ttl - 1;
    if (rewrite(skb, IP_OFF + offsetof(struct iphdr, saddr), saddr, v->saddr, csum_off, l4flags) ||
        rewrite(skb, IP_OFF + offsetof(struct iphdr, daddr), daddr, v->daddr, csum_off, l4flags) ||
        rewrite_port(skb, L4_OFF, sport, v->sport, csum_off, l4flags) ||
        rewrite_port(skb, L4_OFF + 2, dport, v->dport, csum_off, l4flags) ||
        bpf_l3_csum_replace(skb, IP_OFF + offsetof(struct iphdr, check), old_ttl, new_ttl, 2) ||
        bpf_skb_store_bytes(skb, IP_OFF + offsetof(struct iphdr, ttl), &nttl, 1, 0))
        return TC_ACT_SHOT;
    __sync_fetch_and_add(&v->packets, 1);
    __sync_fetch_and_add(&v->bytes, tot);
    v->last_ns = bpf_ktime_get_ns();
    return (int)bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

char LICENSE[] SEC("license") = "GPL";
