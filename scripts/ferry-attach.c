/*
 * ferry-attach: connects a terminal (or pipes) to a container through conmon's attach socket.
 *
 * conmon serves a container's stdio on a SOCK_SEQPACKET unix socket named `attach` in the
 * container's bundle directory: each packet it sends is one byte naming the stream (2 stdout,
 * 3 stderr) followed by the data; what a client sends is written to the container's stdin (or
 * its terminal). Node and Bun cannot open SEQPACKET sockets, so Ferry runs this small program
 * with its own stdio, as Podman's attach does in Go.
 *
 *   ferry-attach [-i] [-t] [-k HEX] [-c CTL] [-r FD] DIR
 *     DIR   the directory holding conmon's `attach` socket (any length: reached via /proc/self/fd)
 *     -i    forward our stdin; at its end the container's stdin is closed (shutdown SHUT_WR)
 *     -t    the container has a terminal: with -i and a terminal on stdin, put it in raw mode
 *           (restored on exit) and watch for the detach keys
 *     -k    the detach key sequence, hex-encoded (empty: no detaching)
 *     -c    conmon's control FIFO: the terminal's size is written there ("1 ROWS COLS") at
 *           start and on every SIGWINCH
 *     -r    after connecting, write "ok\n" (or "error: MESSAGE\n") to this descriptor and close it
 *
 * Exit status: 0 when conmon closed the stream (the container's output ended), 3 when the user
 * detached, 1 on an error (said on stderr, or on -r's descriptor before the connection).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define PACKET 8192

static struct termios saved;
static int raw_fd = -1;
static int ready_fd = -1;

static void restore_terminal(void)
{
	if (raw_fd >= 0)
		tcsetattr(raw_fd, TCSADRAIN, &saved);
	raw_fd = -1;
}

static void fail(const char *what)
{
	int e = errno;
	restore_terminal();
	if (ready_fd >= 0) {
		dprintf(ready_fd, "error: %s: %s\n", what, strerror(e));
		close(ready_fd);
	} else {
		fprintf(stderr, "ferry: attach: %s: %s\n", what, strerror(e));
	}
	exit(1);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (errno == EAGAIN) {
					struct pollfd p = {fd, POLLOUT, 0};
					poll(&p, 1, -1);
				}
				continue;
			}
			return -1;
		}
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

static void send_size(const char *ctl)
{
	struct winsize ws;
	if (!ctl)
		return;
	if (ioctl(0, TIOCGWINSZ, &ws) < 0 && ioctl(1, TIOCGWINSZ, &ws) < 0)
		return;
	if (ws.ws_row == 0 || ws.ws_col == 0)
		return;
	int fd = open(ctl, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	dprintf(fd, "1 %u %u\n", ws.ws_row, ws.ws_col);
	close(fd);
}

static int unhex(const char *s, char *out, size_t max)
{
	size_t n = strlen(s);
	if (n % 2 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		unsigned v;
		if (sscanf(s + i, "%2x", &v) != 1)
			return -1;
		out[i / 2] = (char)v;
	}
	return (int)(n / 2);
}

int main(int argc, char **argv)
{
	int stdin_on = 0, tty = 0, opt;
	char keys[64];
	int nkeys = 0;
	const char *ctl = NULL;
	while ((opt = getopt(argc, argv, "itk:c:r:")) != -1) {
		switch (opt) {
		case 'i': stdin_on = 1; break;
		case 't': tty = 1; break;
		case 'k':
			nkeys = unhex(optarg, keys, sizeof(keys));
			if (nkeys < 0) {
				fprintf(stderr, "ferry-attach: -k wants hex bytes\n");
				return 1;
			}
			break;
		case 'c': ctl = optarg; break;
		case 'r': ready_fd = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: ferry-attach [-i] [-t] [-k HEX] [-c CTL] [-r FD] DIR\n");
			return 1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: ferry-attach [-i] [-t] [-k HEX] [-c CTL] [-r FD] DIR\n");
		return 1;
	}
	/* Die with the ferry that started us (SIGTERM: the terminal is restored first). */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGPIPE, SIG_IGN);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGWINCH);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	/* SIGINT and SIGQUIT are ferry's to forward to the container (without a raw terminal). */
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGQUIT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		fail("sigprocmask");
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0)
		fail("signalfd");
	if (getppid() == 1)
		return 1; /* ferry is already gone */

	int dir = open(argv[optind], O_PATH | O_CLOEXEC);
	if (dir < 0)
		fail(argv[optind]);
	int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0)
		fail("socket");
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "/proc/self/fd/%d/attach", dir);
	if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		fail("connect to the container's attach socket");
	close(dir);

	send_size(ctl);
	if (stdin_on && tty && nkeys >= 0 && isatty(0)) {
		if (tcgetattr(0, &saved) < 0)
			fail("tcgetattr");
		struct termios raw = saved;
		cfmakeraw(&raw);
		if (tcsetattr(0, TCSADRAIN, &raw) < 0)
			fail("tcsetattr");
		raw_fd = 0;
		atexit(restore_terminal);
	} else {
		nkeys = 0; /* detach keys only on a terminal, as Docker */
	}
	if (ready_fd >= 0) {
		if (write_all(ready_fd, "ok\n", 3) < 0)
			fail("ready descriptor");
		close(ready_fd);
		ready_fd = -1;
	}

	char buf[PACKET + 1], out[PACKET + sizeof(keys)];
	int matched = 0, in_open = stdin_on;
	for (;;) {
		struct pollfd p[3] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}, {in_open ? 0 : -1, POLLIN, 0}};
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			fail("poll");
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGWINCH)
					send_size(ctl);
				else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP)
					exit(1);
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n = recv(sock, buf, sizeof(buf), 0);
			if (n == 0 || (n < 0 && errno == ECONNRESET))
				exit(0);
			if (n < 0 && errno != EINTR && errno != EAGAIN)
				fail("read from the container");
			if (n > 1)
				write_all(buf[0] == 3 ? 2 : 1, buf + 1, (size_t)n - 1);
		}
		if (in_open && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t n = read(0, buf, PACKET);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				/* End of our input: the container's stdin ends too (conmon closes it). */
				in_open = 0;
				shutdown(sock, SHUT_WR);
				continue;
			}
			size_t o = 0;
			for (ssize_t i = 0; i < n; i++) {
				char b = buf[i];
				if (nkeys > 0 && b == keys[matched]) {
					if (++matched == nkeys)
						exit(3);
					continue;
				}
				if (matched > 0) {
					memcpy(out + o, keys, (size_t)matched);
					o += (size_t)matched;
					matched = 0;
					if (nkeys > 0 && b == keys[0]) {
						matched = 1;
						continue;
					}
				}
				out[o++] = b;
			}
			if (o > 0 && write_all(sock, out, o) < 0)
				fail("write to the container");
		}
	}
}
