/*
 * ferry-lo-up: an OCI prestart hook that sets the loopback interface up in the container's
 * network namespace (a new namespace starts with lo down). runc passes the container's state
 * as JSON on stdin; its "pid" names the namespace. One small process instead of a shell, sed,
 * nsenter and ip (~20 ms less for every start and restore of a container on --network none).
 *
 * Built by `npm run setup` into /usr/local/lib/ferry/bin. Exit 0 on success; otherwise one line
 * on stderr (runc shows it) and exit 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what) {
  fprintf(stderr, "ferry-lo-up: %s: %s\n", what, strerror(errno));
  return 1;
}

int main(void) {
  char buf[65536];
  size_t n = 0;
  ssize_t r;
  while (n < sizeof buf - 1 && (r = read(0, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
  buf[n] = '\0';
  /* The state's top-level "pid": runc writes it as `"pid":1234` (encoding/json, no spaces). */
  const char *p = strstr(buf, "\"pid\":");
  if (!p) {
    fprintf(stderr, "ferry-lo-up: no \"pid\" in the container state on stdin\n");
    return 1;
  }
  p += 6;
  while (*p == ' ') p++;
  char *end;
  long pid = strtol(p, &end, 10);
  if (end == p || pid <= 0) {
    fprintf(stderr, "ferry-lo-up: bad \"pid\" in the container state on stdin\n");
    return 1;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/ns/net", pid);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) return fail(path);
  if (setns(ns, CLONE_NEWNET) < 0) return fail("setns");
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) return fail("SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) return fail("SIOCSIFFLAGS lo");
  return 0;
}
