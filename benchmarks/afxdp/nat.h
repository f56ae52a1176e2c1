/* VS-NAT rewrite of one IPv4 UDP packet, VIP:port -> real:port, shared by the AF_XDP and
 * the TUN forwarders so that both do exactly the same work per packet. */
#ifndef AFXDP_NAT_H
#define AFXDP_NAT_H

#include <stdint.h>
#include <string.h>
#include <netinet/in.h>

/* RFC 1624 incremental update of a 16-bit one's-complement checksum for a 32-bit change. */
static inline uint16_t csum_replace4(uint16_t check, uint32_t from, uint32_t to)
{
	uint32_t sum = (uint16_t)~check;
	sum += (uint16_t)~(from >> 16) + (uint16_t)~(from & 0xffff);
	sum += (to >> 16) + (to & 0xffff);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* ip points at the IPv4 header, len bytes from there. vip/real/port in network order.
 * Returns 1 if rewritten, 0 if the packet is not UDP to vip:port (left alone). */
static inline int nat_rewrite(uint8_t *ip, size_t len, uint32_t vip, uint32_t real, uint16_t port)
{
	if (len < 28 || (ip[0] >> 4) != 4 || ip[9] != IPPROTO_UDP)
		return 0;
	size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
	if (ihl < 20 || len < ihl + 8)
		return 0;
	uint32_t daddr;
	uint16_t dport, check;
	memcpy(&daddr, ip + 16, 4);
	memcpy(&dport, ip + ihl + 2, 2);
	if (daddr != vip || dport != port)
		return 0;
	memcpy(ip + 16, &real, 4);
	memcpy(&check, ip + 10, 2);
	check = csum_replace4(check, daddr, real);
	memcpy(ip + 10, &check, 2);
	memcpy(&check, ip + ihl + 6, 2);
	if (check != 0) { /* UDP checksum covers the pseudo-header's addresses */
		check = csum_replace4(check, daddr, real);
		if (check == 0)
			check = 0xffff;
		memcpy(ip + ihl + 6, &check, 2);
	}
	return 1;
}

#endif
