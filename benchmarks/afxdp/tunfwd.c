/* TUN VS-NAT forwarder (a measurement baseline): lvsd's packet loop shape, one read() and
 * one write() per packet on a TUN device, with the same rewrite as xskfwd.
 *
 * tunfwd TUN_NAME VIP REAL PORT SECONDS */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "nat.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: tunfwd TUN_NAME VIP REAL PORT SECONDS\n");
		return 2;
	}
	uint32_t vip, real;
	uint16_t port = htons((uint16_t)atoi(argv[4]));
	if (inet_pton(AF_INET, argv[2], &vip) != 1 || inet_pton(AF_INET, argv[3], &real) != 1) {
		fprintf(stderr, "tunfwd: bad address\n");
		return 2;
	}
	int fd = open("/dev/net/tun", O_RDWR);
	struct ifreq ifr = {0};
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr)) {
		fprintf(stderr, "tunfwd: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wake a blocked read */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double deadline = (double)ts.tv_sec + ts.tv_nsec / 1e9 + atof(argv[5]);
	unsigned long long rx = 0, fwd = 0, errs = 0;
	uint8_t buf[2048];
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	while (!stop) {
		if ((rx & 1023) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			if ((double)ts.tv_sec + ts.tv_nsec / 1e9 > deadline)
				break;
			if (poll(&pfd, 1, 100) <= 0)
				continue;
		}
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			if (errno != EINTR)
				errs++;
			continue;
		}
		rx++;
		if (!nat_rewrite(buf, (size_t)n, vip, real, port))
			continue;
		if (write(fd, buf, (size_t)n) == n)
			fwd++;
		else
			errs++;
	}
	printf("rx=%llu forwarded=%llu errors=%llu\n", rx, fwd, errs);
	return 0;
}
