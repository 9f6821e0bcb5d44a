/*
 * memhog: the benchmark's memory workload, and its own integrity check.
 *
 *   memhog MIB
 *
 * Allocates MIB MiB, writes a deterministic pattern into every word (so every page is
 * touched and resident), computes a checksum and prints "ready". Then, forever, every 500 ms
 * it re-reads the whole area, compares it with the pattern and the checksum, and prints
 * "ok N" (N = verification count, continuing across checkpoint/restore) or "CORRUPT ..."
 * and exits 1. A restored process that was really restored (not started again) continues the
 * count and never prints "ready" a second time.
 *
 * Built static (gcc -static -O2) and bind-mounted read-only into a busybox container.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static inline uint64_t pattern(uint64_t i) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: memhog MIB\n");
    return 2;
  }
  size_t mib = (size_t)strtoul(argv[1], NULL, 10);
  size_t n = mib * 1024 * 1024 / sizeof(uint64_t);
  /* Anonymous private memory, like any heap: no hugepages, so the dump is page-for-page. */
  uint64_t *mem = mmap(NULL, n * sizeof(uint64_t) + 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    printf("CORRUPT cannot allocate %zu MiB\n", mib);
    fflush(stdout);
    return 1;
  }
  madvise(mem, n * sizeof(uint64_t), MADV_NOHUGEPAGE);
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    mem[i] = pattern(i);
    sum += mem[i] ^ i;
  }
  printf("ready %zu MiB checksum %016llx\n", mib, (unsigned long long)sum);
  fflush(stdout);

  struct timespec period = {0, 500 * 1000 * 1000};
  for (unsigned long it = 1;; it++) {
    nanosleep(&period, NULL);
    uint64_t s = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
      uint64_t v = mem[i];
      s += v ^ i;
      bad += v != pattern(i);
    }
    if (s != sum || bad) {
      printf("CORRUPT at check %lu: %zu words differ, checksum %016llx, expected %016llx\n", it, bad, (unsigned long long)s, (unsigned long long)sum);
      fflush(stdout);
      return 1;
    }
    printf("ok %lu\n", it);
    fflush(stdout);
  }
}
