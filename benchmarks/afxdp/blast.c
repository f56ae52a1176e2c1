/* UDP load generator: 64-byte payloads to HOST:PORT from one socket, as fast as send()
 * goes, for SECONDS; prints how many it sent. blast HOST PORT SECONDS */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: blast HOST PORT SECONDS\n");
		return 2;
	}
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1)
		return 2;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof(to)))
		return 1;
	char payload[64];
	memset(payload, 'x', sizeof(payload));
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double deadline = (double)ts.tv_sec + ts.tv_nsec / 1e9 + atof(argv[3]);
	unsigned long long sent = 0, failed = 0;
	for (;;) {
		for (int i = 0; i < 256; i++) {
			if (send(fd, payload, sizeof(payload), 0) == (ssize_t)sizeof(payload))
				sent++;
			else
				failed++;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if ((double)ts.tv_sec + ts.tv_nsec / 1e9 > deadline)
			break;
	}
	printf("sent=%llu failed=%llu\n", sent, failed);
	return 0;
}
