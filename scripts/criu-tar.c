/*
 * `tar` for the CRIU that Ferry runs (scripts/setup.sh builds it into a directory that Ferry
 * puts first on that CRIU's PATH; nothing else runs it).
 *
 * CRIU saves the contents of every tmpfs in a container by running `tar --create --gzip` on
 * it, and puts them back with `tar --extract --gzip`. A container has six: /dev, /dev/shm,
 * /sys/fs/cgroup, and the read-only ones that mask /proc/acpi, /sys/firmware and
 * /sys/dev/block. Each run of GNU tar, which starts gzip in turn, costs about 3.5 ms, and every
 * dump and every restore runs six.
 *
 * This program does the two commands CRIU gives itself when the tree holds only what such
 * mounts hold: directories, symbolic links, device nodes, FIFOs and small regular files, with
 * short names, one link each. It writes the archive GNU tar 1.34 writes (GNU format, numeric
 * owners, members in directory order, the record padded to 10240 bytes; gzip), and extracts
 * such an archive (exactly as this program or GNU tar writes it) into an empty directory as
 * GNU tar does as root: each member's mtime, owner and mode, directories' last.
 * Anything else goes to GNU tar with the same arguments (the first `tar` on PATH that is not
 * this program), before anything is written.
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
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK 512
#define RECORD 10240		 /* GNU tar's default record: 20 blocks */
#define MAX_TAR (4 << 20)	 /* larger trees: GNU tar's */
#define MAX_MEMBERS 4096
#define MAX_DEPTH 32
#define NOT_MINE 1 /* a result: GNU tar's work */

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

/* ------------------------------------------------------------------------------ the format */

/* v in width - 1 octal digits and a NUL (the caller has checked that it fits). */
static void octal(char *field, int width, unsigned long long v)
{
	field[width - 1] = 0;
	for (int i = width - 2; i >= 0; i--, v >>= 3)
		field[i] = '0' + (v & 7);
}

struct member {
	char name[100]; /* "./" and the path, "/" after a directory's */
	char link[100]; /* a symbolic link's target */
	char type;	/* '0' file, '2' link, '3' char, '4' block, '5' directory, '6' FIFO */
	unsigned mode;	/* the permission bits */
	unsigned long long uid, gid, size, mtime, major, minor;
	size_t data; /* where a file's bytes are in the archive */
};

/*
 * The header GNU tar 1.34 writes for m (GNU format, --numeric-owner); -1 where it would write
 * another (a long name or link, a number beyond its octal field).
 */
static int header(char *h, const struct member *m)
{
	unsigned sum = 0;
	if (strnlen(m->name, 100) >= 100 || strnlen(m->link, 100) >= 100 || m->mode > 07777 || m->uid > 07777777 ||
	    m->gid > 07777777 || m->size > 077777777777ULL || m->mtime > 077777777777ULL || m->major > 07777777 ||
	    m->minor > 07777777)
		return -1;
	memset(h, 0, BLOCK);
	memcpy(h, m->name, strlen(m->name));
	octal(h + 100, 8, m->mode);
	octal(h + 108, 8, m->uid);
	octal(h + 116, 8, m->gid);
	octal(h + 124, 12, m->size);
	octal(h + 136, 12, m->mtime);
	memset(h + 148, ' ', 8);
	h[156] = m->type;
	memcpy(h + 157, m->link, strlen(m->link));
	memcpy(h + 257, "ustar  ", 8); /* GNU magic and version: "ustar  \0" */
	if (m->type == '3' || m->type == '4') {
		octal(h + 329, 8, m->major);
		octal(h + 337, 8, m->minor);
	}
	for (int i = 0; i < BLOCK; i++)
		sum += (unsigned char)h[i];
	octal(h + 148, 7, sum); /* six digits, NUL, then the space already there */
	return 0;
}

struct buf {
	unsigned char *p;
	size_t len, cap;
};

static int put(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > MAX_TAR)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : RECORD;
		while (cap < b->len + n)
			cap *= 2;
		unsigned char *p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	if (d)
		memcpy(b->p + b->len, d, n);
	else
		memset(b->p + b->len, 0, n);
	b->len += n;
	return 0;
}

/* ------------------------------------------------------------------------------- --create */

static int member_of(struct member *m, const char *name, const struct stat *st)
{
	memset(m, 0, sizeof(*m));
	if (snprintf(m->name, sizeof(m->name), "%s", name) >= (int)sizeof(m->name) || st->st_mtime < 0)
		return -1;
	m->mode = st->st_mode & 07777;
	m->uid = st->st_uid;
	m->gid = st->st_gid;
	m->mtime = st->st_mtime;
	switch (st->st_mode & S_IFMT) {
	case S_IFDIR: m->type = '5'; break;
	case S_IFLNK: m->type = '2'; break;
	case S_IFCHR: m->type = '3'; break;
	case S_IFBLK: m->type = '4'; break;
	case S_IFIFO: m->type = '6'; break;
	case S_IFREG: m->type = '0'; m->size = st->st_size; break;
	default: return -1; /* a socket: GNU tar's (it leaves it out, with a warning) */
	}
	if (m->type == '3' || m->type == '4') {
		m->major = major(st->st_rdev);
		m->minor = minor(st->st_rdev);
	}
	/* Another link to it (--check-links), or holes (--sparse): GNU tar's. */
	if (m->type != '5' && st->st_nlink != 1)
		return -1;
	if (m->type == '0' && (off_t)st->st_blocks * 512 < st->st_size)
		return -1;
	return 0;
}

static int add(struct buf *b, struct member *m)
{
	char h[BLOCK];
	return header(h, m) ? -1 : put(b, h, BLOCK);
}

static int read_exactly(int fd, unsigned char *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	char extra;
	return read(fd, &extra, 1) == 0 ? 0 : -1;
}

/*
 * The members below directory `fd` (named `prefix` in the archive), in the order GNU tar
 * writes them: the directory's entries as getdents gives them, each directory's own members
 * right after it. -1: not a tree this program archives.
 */
static int walk(struct buf *b, int fd, const char *prefix, dev_t dev, int depth)
{
	char ents[65536];
	long n = 0, got;
	/* Every entry first, as GNU tar reads a directory whole before archiving it. */
	while ((got = syscall(SYS_getdents64, fd, ents + n, sizeof(ents) - n)) > 0)
		n += got;
	if (got < 0 || depth > MAX_DEPTH)
		return -1;
	for (long off = 0; off < n;) {
		struct dirent64 *d = (struct dirent64 *)(ents + off);
		off += d->d_reclen;
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		struct stat st;
		struct member m;
		char name[128];
		if (fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) || st.st_dev != dev)
			return -1; /* gone, or another filesystem's (--one-file-system) */
		int dir = S_ISDIR(st.st_mode);
		if (snprintf(name, sizeof(name), "%s%s%s", prefix, d->d_name, dir ? "/" : "") >= (int)sizeof(name) ||
		    member_of(&m, name, &st))
			return -1;
		if (m.type == '2') {
			ssize_t l = readlinkat(fd, d->d_name, m.link, sizeof(m.link));
			if (l < 0 || l >= (ssize_t)sizeof(m.link))
				return -1;
			m.link[l] = 0;
		}
		if (add(b, &m))
			return -1;
		if (m.type == '0' && m.size) {
			size_t at = b->len, pad = (BLOCK - m.size % BLOCK) % BLOCK;
			int f = openat(fd, d->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			int bad = f < 0 || put(b, NULL, m.size + pad) || read_exactly(f, b->p + at, m.size);
			if (f >= 0)
				close(f);
			if (bad)
				return -1;
		}
		if (dir) {
			int sub = openat(fd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			int bad = sub < 0 || walk(b, sub, name, dev, depth + 1);
			if (sub >= 0)
				close(sub);
			if (bad)
				return -1;
		}
	}
	return 0;
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

/* gzip, level 6 as gzip's default (header: mtime 0, no name, as gzip writes from a pipe). */
static int gzip_out(const unsigned char *p, size_t n)
{
	z_stream z = { 0 };
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	size_t cap = deflateBound(&z, n);
	unsigned char *out = malloc(cap);
	if (!out) {
		deflateEnd(&z);
		return -1;
	}
	z.next_in = (unsigned char *)p;
	z.avail_in = n;
	z.next_out = out;
	z.avail_out = cap;
	int r = deflate(&z, Z_FINISH);
	size_t len = cap - z.avail_out;
	deflateEnd(&z);
	int rc = r == Z_STREAM_END ? write_all(STDOUT_FILENO, out, len) : -1;
	free(out);
	return rc;
}

/* --create: 0 done, NOT_MINE, or -1 failed (after writing). */
static int create(const char *dir)
{
	struct buf b = { 0 };
	struct stat st;
	struct member root;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NOT_MINE;
	int bad = fstat(fd, &st) || member_of(&root, "./", &st) || add(&b, &root) || walk(&b, fd, "./", st.st_dev, 0);
	close(fd);
	/* The end: two zero blocks, then the record filled. */
	if (bad || put(&b, NULL, 2 * BLOCK) || put(&b, NULL, (RECORD - b.len % RECORD) % RECORD))
		return NOT_MINE;
	return gzip_out(b.p, b.len) ? -1 : 0;
}

/* ------------------------------------------------------------------------------ --extract */

static unsigned long long field(const char *f, int width, int *bad)
{
	unsigned long long v = 0;
	int i = 0;
	if (f[0] < '0' || f[0] > '7')
		*bad = 1;
	for (; i < width && f[i] >= '0' && f[i] <= '7'; i++)
		v = v * 8 + (f[i] - '0');
	if (i < width && f[i])
		*bad = 1;
	return v;
}

/* The archive's members, each header exactly as header() writes it; -1 otherwise. */
static int parse(const unsigned char *t, size_t len, struct member *ms, int *count)
{
	size_t off = 0;
	int n = 0;
	while (off + BLOCK <= len) {
		const char *h = (const char *)t + off;
		char want[BLOCK];
		int bad = 0;
		if (!h[0])
			break;
		if (n == MAX_MEMBERS)
			return -1;
		struct member *m = &ms[n];
		memset(m, 0, sizeof(*m));
		memcpy(m->name, h, 99);
		memcpy(m->link, h + 157, 99);
		m->type = h[156];
		m->mode = field(h + 100, 8, &bad);
		m->uid = field(h + 108, 8, &bad);
		m->gid = field(h + 116, 8, &bad);
		m->size = field(h + 124, 12, &bad);
		m->mtime = field(h + 136, 12, &bad);
		if (m->type == '3' || m->type == '4') {
			m->major = field(h + 329, 8, &bad);
			m->minor = field(h + 337, 8, &bad);
		}
		if (bad || !m->type || !strchr("023456", m->type) || header(want, m) || memcmp(want, h, BLOCK))
			return -1;
		if (m->type != '0' && m->size)
			return -1;
		off += BLOCK;
		m->data = off;
		off += (m->size + BLOCK - 1) / BLOCK * BLOCK;
		if (off > len)
			return -1;
		n++;
	}
	/* Then nothing but zeros. */
	for (; off < len; off++)
		if (t[off])
			return -1;
	*count = n;
	return 0;
}

/* Where a member goes, relative to the directory: its name without "./" and a directory's "/"; "." for "./". */
static void rel_path(const struct member *m, char out[100])
{
	size_t len = strlen(m->name) - 2 - (m->type == '5' && m->name[2]);
	memcpy(out, m->name + 2, len);
	out[len] = 0;
	if (!len)
		strcpy(out, ".");
}

/*
 * Names this program extracts: the first member "./" (the directory itself); then "./PATH"
 * with no empty, "." or ".." component, a directory's ending in "/" and no other's, each under
 * "./" or a directory member before it, each once. Then no member reaches through a link.
 */
static int check(struct member *ms, int n)
{
	if (n < 1 || strcmp(ms[0].name, "./") || ms[0].type != '5')
		return -1;
	for (int i = 1; i < n; i++) {
		const char *name = ms[i].name;
		size_t len = strlen(name);
		if (strncmp(name, "./", 2) || len < 3 || (name[len - 1] == '/') != (ms[i].type == '5'))
			return -1;
		char path[100], other[100];
		rel_path(&ms[i], path);
		for (const char *c = path, *next; c; c = next) {
			next = strchr(c, '/');
			size_t l = next ? (size_t)(next++ - c) : strlen(c);
			if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
				return -1;
		}
		const char *slash = strrchr(path, '/');
		int parent = !slash;
		for (int j = 1; j < i; j++) {
			rel_path(&ms[j], other);
			if (!strcmp(other, path))
				return -1; /* twice */
			if (slash && ms[j].type == '5' && strlen(other) == (size_t)(slash - path) && !strncmp(other, path, slash - path))
				parent = 1;
		}
		if (!parent)
			return -1;
	}
	return 0;
}

static int empty_dir(int fd)
{
	char buf[4096];
	long n;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0)
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
				return 0;
			off += d->d_reclen;
		}
	return n == 0;
}

/* As GNU tar sets a member's status as root: times (atime now), then owner, then mode. */
static int set_status(int dirfd, const char *path, const struct member *m)
{
	int nofollow = m->type == '2' ? AT_SYMLINK_NOFOLLOW : 0;
	struct timespec ts[2] = { { .tv_nsec = UTIME_NOW }, { .tv_sec = m->mtime } };
	if (utimensat(dirfd, path, ts, nofollow) || fchownat(dirfd, path, m->uid, m->gid, nofollow))
		return -1;
	return m->type == '2' ? 0 : fchmodat(dirfd, path, m->mode, 0);
}

/* --extract: 0 done, NOT_MINE (nothing written), or -1 failed. */
static int extract(const char *dir)
{
	static unsigned char in[1 << 20];
	/* A regular file only: read here and, if it is not for us, handed on whole. */
	struct stat in_st;
	if (fstat(STDIN_FILENO, &in_st) || !S_ISREG(in_st.st_mode) || in_st.st_size > (off_t)sizeof(in))
		return NOT_MINE;
	ssize_t n = pread(STDIN_FILENO, in, sizeof(in), 0);
	if (n != in_st.st_size)
		return NOT_MINE;
	/* Untouched pages cost nothing: only what inflate writes is ever faulted in. */
	unsigned char *t = malloc(MAX_TAR);
	if (!t)
		return NOT_MINE;
	z_stream z = { 0 };
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return NOT_MINE;
	z.next_in = in;
	z.avail_in = n;
	z.next_out = t;
	z.avail_out = MAX_TAR;
	int r = inflate(&z, Z_FINISH);
	size_t len = MAX_TAR - z.avail_out, rest = z.avail_in;
	inflateEnd(&z);
	static struct member ms[MAX_MEMBERS];
	int count;
	if (r != Z_STREAM_END || rest || len % BLOCK || parse(t, len, ms, &count) || check(ms, count))
		return NOT_MINE;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NOT_MINE;
	if (empty_dir(fd) != 1) {
		close(fd);
		return NOT_MINE;
	}
	const char *failed = NULL;
	char path[100];
	for (int i = 1; i < count && !failed; i++) {
		struct member *m = &ms[i];
		rel_path(m, path);
		int ok;
		if (m->type == '5') {
			if (mkdirat(fd, path, 0700))
				failed = m->name;
			continue; /* its status once its members are in */
		}
		if (m->type == '2')
			ok = !symlinkat(m->link, fd, path);
		else if (m->type == '0') {
			int f = openat(fd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			ok = f >= 0 && !write_all(f, t + m->data, m->size);
			if (f >= 0 && close(f))
				ok = 0;
		} else {
			mode_t type = m->type == '3' ? S_IFCHR : m->type == '4' ? S_IFBLK : S_IFIFO;
			ok = !mknodat(fd, path, type | 0600, makedev(m->major, m->minor));
		}
		if (!ok || set_status(fd, path, m))
			failed = m->name;
	}
	/* Directories last, deepest first, so that making their members does not change them. */
	for (int i = count - 1; i >= 0 && !failed; i--) {
		if (ms[i].type != '5')
			continue;
		rel_path(&ms[i], path);
		if (set_status(fd, path, &ms[i]))
			failed = ms[i].name;
	}
	close(fd);
	if (failed) {
		fprintf(stderr, "tar: %s: %s: %s\n", dir, failed, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir;
	int r = NOT_MINE;
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
