/* AF_XDP VS-NAT forwarder (a measurement prototype, not part of lvsd).
 *
 * xskfwd IN_IF OUT_IF VIP REAL PORT REAL_MAC BPF_OBJ SECONDS [native|generic]
 *
 * Attaches redirect.bpf.o to IN_IF (native XDP if the driver takes it, else generic;
 * generic only if asked),
 * binds one AF_XDP socket on IN_IF queue 0 (receive) and one on OUT_IF queue 0
 * (transmit), each with its own UMEM; every UDP packet to VIP:PORT is copied to a
 * transmit frame, its Ethernet addresses set (OUT_IF's -> REAL_MAC), its destination
 * rewritten to REAL with checksums updated, and sent. Runs SECONDS or until SIGTERM,
 * then prints one line of counters and the modes the kernel gave. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>
#include <net/if_arp.h>

#include "nat.h"

#define FRAMES 4096
#define FRAME_SIZE XSK_UMEM__DEFAULT_FRAME_SIZE
#define BATCH 64

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what, int err)
{
	fprintf(stderr, "xskfwd: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

struct port {
	void *buf;
	struct xsk_umem *umem;
	struct xsk_ring_prod fill;
	struct xsk_ring_cons comp;
	struct xsk_ring_cons rx;
	struct xsk_ring_prod tx;
	struct xsk_socket *xsk;
};

static void open_port(struct port *p, const char *ifname, int rx)
{
	struct xsk_socket_config cfg = {
		.rx_size = XSK_RING_CONS__DEFAULT_NUM_DESCS,
		.tx_size = XSK_RING_PROD__DEFAULT_NUM_DESCS,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.bind_flags = XDP_USE_NEED_WAKEUP, /* zero-copy if the driver has it, else copy */
	};
	size_t size = (size_t)FRAMES * FRAME_SIZE;
	int err;

	p->buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->buf == MAP_FAILED)
		die("mmap", errno);
	err = xsk_umem__create(&p->umem, p->buf, size, &p->fill, &p->comp, NULL);
	if (err)
		die("xsk_umem__create", err);
	err = xsk_socket__create(&p->xsk, ifname, 0, p->umem, rx ? &p->rx : NULL,
				 rx ? NULL : &p->tx, &cfg);
	if (err)
		die("xsk_socket__create", err);
}

static const char *zc_mode(struct port *p)
{
	struct xdp_options opts;
	socklen_t len = sizeof(opts);
	if (getsockopt(xsk_socket__fd(p->xsk), SOL_XDP, XDP_OPTIONS, &opts, &len))
		return "unknown";
	return (opts.flags & XDP_OPTIONS_ZEROCOPY) ? "zero-copy" : "copy";
}

static void if_mac(const char *ifname, uint8_t mac[6])
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (fd < 0 || ioctl(fd, SIOCGIFHWADDR, &ifr))
		die(ifname, errno);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	close(fd);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 9 && argc != 10) {
		fprintf(stderr, "usage: xskfwd IN_IF OUT_IF VIP REAL PORT REAL_MAC BPF_OBJ SECONDS "
				"[native|generic]\n");
		return 2;
	}
	const char *in_if = argv[1], *out_if = argv[2];
	uint32_t vip, real;
	uint16_t port = htons((uint16_t)atoi(argv[5]));
	uint8_t real_mac[6], out_mac[6];
	double deadline = now() + atof(argv[8]);
	if (inet_pton(AF_INET, argv[3], &vip) != 1 || inet_pton(AF_INET, argv[4], &real) != 1)
		die("address", EINVAL);
	if (sscanf(argv[6], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &real_mac[0], &real_mac[1],
		   &real_mac[2], &real_mac[3], &real_mac[4], &real_mac[5]) != 6)
		die("REAL_MAC", EINVAL);
	if_mac(out_if, out_mac);
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wake a blocked read */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int in_idx = (int)if_nametoindex(in_if);
	struct bpf_object *obj = bpf_object__open_file(argv[7], NULL);
	if (!obj || libbpf_get_error(obj))
		die("bpf_object__open_file", errno);
	int err = bpf_object__load(obj);
	if (err)
		die("bpf_object__load", err);
	int prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, "redirect_vip"));
	int xsks_fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "xsks"));
	int target_fd = bpf_map__fd(bpf_object__find_map_by_name(obj, "target"));
	struct { uint32_t vip; uint16_t port, pad; } tgt = {vip, port, 0};
	uint32_t zero = 0;
	if (bpf_map_update_elem(target_fd, &zero, &tgt, 0))
		die("target map", errno);
	const char *xdp_mode = "native";
	uint32_t xdp_flags = XDP_FLAGS_DRV_MODE;
	int generic_only = argc == 10 && strcmp(argv[9], "generic") == 0;
	if (generic_only || bpf_xdp_attach(in_idx, prog_fd, xdp_flags, NULL)) {
		xdp_mode = "generic";
		xdp_flags = XDP_FLAGS_SKB_MODE;
		err = bpf_xdp_attach(in_idx, prog_fd, xdp_flags, NULL);
		if (err)
			die("bpf_xdp_attach", err);
	}

	static struct port in, out;
	open_port(&in, in_if, 1);
	open_port(&out, out_if, 0);
	int in_fd = xsk_socket__fd(in.xsk), out_fd = xsk_socket__fd(out.xsk);
	uint32_t key = 0;
	if (bpf_map_update_elem(xsks_fd, &key, &in_fd, 0))
		die("xsks map", errno);
	printf("ready\n");
	fflush(stdout);

	/* Receive UMEM: every frame starts in the fill ring (ring size 2048 < FRAMES). */
	uint32_t idx;
	uint32_t nfill = xsk_ring_prod__reserve(&in.fill, XSK_RING_PROD__DEFAULT_NUM_DESCS, &idx);
	for (uint32_t i = 0; i < nfill; i++)
		*xsk_ring_prod__fill_addr(&in.fill, idx + i) = (uint64_t)i * FRAME_SIZE;
	xsk_ring_prod__submit(&in.fill, nfill);
	/* Transmit UMEM: a stack of free frames, refilled from the completion ring. */
	static uint64_t free_tx[FRAMES];
	uint32_t nfree = 0;
	for (uint32_t i = 0; i < FRAMES; i++)
		free_tx[nfree++] = (uint64_t)i * FRAME_SIZE;

	unsigned long long rx_pkts = 0, fwd = 0, passed = 0, no_frame = 0, wakeups = 0;
	struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
	while (!stop) {
		uint32_t idx_c, n_c = xsk_ring_cons__peek(&out.comp, FRAMES, &idx_c);
		for (uint32_t i = 0; i < n_c; i++)
			free_tx[nfree++] = *xsk_ring_cons__comp_addr(&out.comp, idx_c + i);
		xsk_ring_cons__release(&out.comp, n_c);

		uint32_t idx_rx, n = xsk_ring_cons__peek(&in.rx, BATCH, &idx_rx);
		if (n == 0) {
			if (now() > deadline)
				break;
			if (xsk_ring_prod__needs_wakeup(&in.fill))
				wakeups++;
			poll(&pfd, 1, 100);
			continue;
		}
		uint32_t idx_tx = 0, m = 0;
		uint32_t want = n < nfree ? n : nfree;
		if (want && xsk_ring_prod__reserve(&out.tx, want, &idx_tx) != want)
			want = 0;
		uint32_t idx_f;
		while (xsk_ring_prod__reserve(&in.fill, n, &idx_f) != n)
			; /* cannot fail: every received frame goes straight back */
		for (uint32_t i = 0; i < n; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&in.rx, idx_rx + i);
			uint8_t *pkt = xsk_umem__get_data(in.buf, d->addr);
			*xsk_ring_prod__fill_addr(&in.fill, idx_f + i) = xsk_umem__extract_addr(d->addr);
			rx_pkts++;
			if (m == want) {
				no_frame++;
				continue;
			}
			uint64_t addr = free_tx[--nfree];
			uint8_t *out_pkt = xsk_umem__get_data(out.buf, addr);
			memcpy(out_pkt, pkt, d->len);
			if (d->len < 14 || !nat_rewrite(out_pkt + 14, d->len - 14, vip, real, port)) {
				free_tx[nfree++] = addr;
				passed++;
				continue;
			}
			memcpy(out_pkt, real_mac, 6);
			memcpy(out_pkt + 6, out_mac, 6);
			struct xdp_desc *t = xsk_ring_prod__tx_desc(&out.tx, idx_tx + m);
			t->addr = addr;
			t->len = d->len;
			m++;
		}
		/* Unused reserved tx slots: submit only what was filled (libxdp cancels none,
		 * so shrink the producer by hand). */
		if (want > m)
			out.tx.cached_prod -= want - m;
		xsk_ring_cons__release(&in.rx, n);
		xsk_ring_prod__submit(&in.fill, n);
		if (m) {
			xsk_ring_prod__submit(&out.tx, m);
			fwd += m;
			/* Copy mode: each sendto() transmits at most 32 frames (the kernel's
			 * TX_BATCH_SIZE), so kick once per 32. */
			for (uint32_t k = 0; k < (m + 31) / 32; k++)
				sendto(out_fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
		}
	}
	printf("xdp_mode=%s rx_bind=%s tx_bind=%s rx=%llu forwarded=%llu not_matched=%llu "
	       "no_tx_frame=%llu wakeups=%llu\n",
	       xdp_mode, zc_mode(&in), zc_mode(&out), rx_pkts, fwd, passed, no_frame, wakeups);
	fflush(stdout);
	xsk_socket__delete(in.xsk);
	xsk_socket__delete(out.xsk);
	xsk_umem__delete(in.umem);
	xsk_umem__delete(out.umem);
	bpf_xdp_detach(in_idx, xdp_flags, NULL);
	bpf_object__close(obj);
	return 0;
}
