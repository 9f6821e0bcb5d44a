/*
 * `tar` for the CRIU that Ferry runs (scripts/setup.sh builds it into a directory that Ferry
 * puts first on that CRIU's PATH; nothing else runs it).
 *
 * CRIU saves the contents of every tmpfs in a container by running `tar --create --gzip` on
 * it, and puts them back with `tar --extract --gzip`. A container has six: /dev, /dev/shm,
 * /sys/fs/cgroup, and the read-only ones that mask /proc/acpi, /sys/firmware and
 * /sys/dev/block. Four of them are empty. Each run of GNU tar, which starts gzip in turn,
 * costs about 3.5 ms, and every dump and every restore runs six.
 *
 * This program does the two commands CRIU gives for an empty directory itself, with the
 * result GNU tar 1.34 gives (the same archive: one "./" member in GNU format, numeric owner,
 * gzip; on extraction, the directory's mtime, owner and mode set as tar sets them as root).
 * Anything else, or anything it does not recognise, goes to GNU tar with the same arguments:
 * the first `tar` on PATH that is not this program.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK 512
#define RECORD 10240 /* GNU tar's default record: 20 blocks */

static const char *const create_args[] = {
	"--create", "--gzip", "--no-unquote", "--no-wildcards", "--one-file-system", "--check-links",
	"--preserve-permissions", "--sparse", "--numeric-owner", "--directory", NULL /* DIR */, ".", NULL,
};
static const char *const extract_args[] = {
	"--extract", "--gzip", "--no-unquote", "--no-wildcards", "--directory", NULL /* DIR */, NULL,
};

/* argv[1..] is exactly `want`, with NULL the directory's place; returns that directory. */
static const char *match(int argc, char **argv, const char *const *want, int n)
{
	const char *dir = NULL;
	if (argc != n + 1)
		return NULL;
	for (int i = 0; i < n; i++) {
		if (!want[i])
			dir = argv[i + 1];
		else if (strcmp(want[i], argv[i + 1]))
			return NULL;
	}
	return dir && *dir ? dir : NULL;
}

/*
 * Runs the first other `tar` on PATH with the same arguments (any entry that resolves to this
 * program is skipped, so it never runs itself); returns only if there is none.
 */
static int real_tar(char **argv)
{
	char self[PATH_MAX], other[PATH_MAX], cand[PATH_MAX];
	if (!realpath("/proc/self/exe", self))
		return 127;
	const char *path = getenv("PATH");
	char *copy = strdup(path && *path ? path : "/usr/bin:/bin"), *save = NULL;
	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (snprintf(cand, sizeof(cand), "%s/tar", d) >= (int)sizeof(cand))
			continue;
		if (!realpath(cand, other) || !strcmp(other, self) || access(other, X_OK))
			continue;
		argv[0] = "tar";
		execv(other, argv);
	}
	fprintf(stderr, "tar: no GNU tar on PATH besides %s (install the tar package)\n", self);
	return 127;
}

/* v in width - 1 octal digits and a NUL (the caller has checked that it fits). */
static void octal(char *field, int width, unsigned long long v)
{
	field[width - 1] = 0;
	for (int i = width - 2; i >= 0; i--, v >>= 3)
		field[i] = '0' + (v & 7);
}

/* The "./" header GNU tar writes for a directory (GNU format, --numeric-owner). */
static int header(char *h, const struct stat *st)
{
	unsigned sum = 0;
	/* Octal fields: mode 7 digits, ids 7, mtime 11; GNU tar switches to base-256 beyond. */
	if (st->st_uid > 07777777 || st->st_gid > 07777777 || st->st_mtime < 0 || (unsigned long long)st->st_mtime > 077777777777ULL)
		return -1;
	memset(h, 0, BLOCK);
	memcpy(h, "./", 2);
	octal(h + 100, 8, st->st_mode & 07777);
	octal(h + 108, 8, st->st_uid);
	octal(h + 116, 8, st->st_gid);
	octal(h + 124, 12, 0);
	octal(h + 136, 12, (unsigned long long)st->st_mtime);
	memset(h + 148, ' ', 8);
	h[156] = '5';
	memcpy(h + 257, "ustar  ", 8); /* GNU magic and version: "ustar  \0" */
	for (int i = 0; i < BLOCK; i++)
		sum += (unsigned char)h[i];
	octal(h + 148, 7, sum); /* six digits, NUL, then the space already there */
	return 0;
}

static int empty_dir(int fd)
{
	char buf[4096];
	for (;;) {
		long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		if (n < 0)
			return -1;
		if (n == 0)
			return 1;
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
				return 0;
			off += d->d_reclen;
		}
	}
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= w;
	}
	return 0;
}

/* --create of an empty directory: 0 done, 1 not for us, -1 failed. */
static int create(const char *dir)
{
	static char tarball[RECORD];
	unsigned char out[1024];
	struct stat st;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	int empty = empty_dir(fd);
	int ok = fstat(fd, &st) == 0;
	close(fd);
	if (empty != 1 || !ok || header(tarball, &st))
		return 1;
	z_stream z = { 0 };
	/* windowBits 15 + 16: a gzip stream, as gzip -6 writes (mtime 0, no name: from a pipe). */
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	z.next_in = (unsigned char *)tarball;
	z.avail_in = RECORD;
	z.next_out = out;
	z.avail_out = sizeof(out);
	int r = deflate(&z, Z_FINISH);
	size_t len = sizeof(out) - z.avail_out;
	deflateEnd(&z);
	if (r != Z_STREAM_END)
		return -1;
	return write_all(STDOUT_FILENO, out, len) ? -1 : 0;
}

static unsigned long long field(const char *f, int width, int *bad)
{
	unsigned long long v = 0;
	int i = 0;
	while (i < width && f[i] == ' ')
		i++;
	if (i == width || f[i] < '0' || f[i] > '7')
		*bad = 1;
	for (; i < width && f[i] >= '0' && f[i] <= '7'; i++)
		v = v * 8 + (f[i] - '0');
	for (; i < width; i++)
		if (f[i] != 0 && f[i] != ' ')
			*bad = 1;
	return v;
}

/* --extract of an archive holding only "./": 0 done, 1 not for us, -1 failed. */
static int extract(const char *dir)
{
	unsigned char in[4096];
	static unsigned char tarball[RECORD + 1];
	/* Only a small regular file can be read and, if it is not for us, handed on whole. */
	struct stat in_st;
	if (fstat(STDIN_FILENO, &in_st) || !S_ISREG(in_st.st_mode) || in_st.st_size > (off_t)sizeof(in))
		return 1;
	ssize_t n = pread(STDIN_FILENO, in, sizeof(in), 0);
	if (n != in_st.st_size)
		return 1;
	z_stream z = { 0 };
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return 1;
	z.next_in = in;
	z.avail_in = n;
	z.next_out = tarball;
	z.avail_out = sizeof(tarball);
	int r = inflate(&z, Z_FINISH);
	size_t len = sizeof(tarball) - z.avail_out;
	size_t rest = z.avail_in;
	inflateEnd(&z);
	if (r != Z_STREAM_END || rest || len < 3 * BLOCK || len % BLOCK)
		return 1;
	/* Exactly the header this program and GNU tar write for "./", nothing else in it. */
	const char *h = (const char *)tarball;
	char want[BLOCK];
	int bad = 0;
	struct stat st = { 0 };
	st.st_mode = field(h + 100, 8, &bad);
	st.st_uid = field(h + 108, 8, &bad);
	st.st_gid = field(h + 116, 8, &bad);
	st.st_mtime = field(h + 136, 12, &bad);
	if (bad || header(want, &st) || memcmp(want, h, BLOCK))
		return 1;
	for (size_t i = BLOCK; i < len; i++)
		if (tarball[i])
			return 1;
	/* As GNU tar sets an existing directory's status as root: times (atime now), owner, mode. */
	struct timespec ts[2] = { { .tv_nsec = UTIME_NOW }, { .tv_sec = st.st_mtime } };
	if (utimensat(AT_FDCWD, dir, ts, 0) || lchown(dir, st.st_uid, st.st_gid) || chmod(dir, st.st_mode)) {
		fprintf(stderr, "tar: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir;
	int r = 1;
	if ((dir = match(argc, argv, create_args, 12)))
		r = create(dir);
	else if ((dir = match(argc, argv, extract_args, 6)))
		r = extract(dir);
	if (r == 0)
		return 0;
	if (r < 0)
		return 2;
	return real_tar(argv);
}
