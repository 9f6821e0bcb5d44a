/*
 * Preloaded into Ferry's CRIU by its wrapper (scripts/setup.sh builds it).
 *
 * CRIU reads every dumped task's resource limits with prlimit64(pid, resource, NULL, &old).
 * For a task of another user the kernel wants CAP_SYS_RESOURCE for that, and hosts that
 * withhold the capability from root (nested containers, restricted runners) refuse it with
 * EPERM: any container whose process does not run as root then fails to checkpoint ("Can't get
 * rlimit 0: Operation not permitted"). The same limits are readable in /proc/PID/limits, so
 * when the kernel says EPERM to a read-only prlimit64, this answers it from there. Everything
 * else goes to the real call unchanged. CRIU makes the call through glibc's syscall(), which is
 * what is interposed here.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>

/* The row names of /proc/PID/limits (fs/proc/base.c), by resource number. */
static const char *const rows[RLIM_NLIMITS] = {
	[RLIMIT_CPU] = "Max cpu time",
	[RLIMIT_FSIZE] = "Max file size",
	[RLIMIT_DATA] = "Max data size",
	[RLIMIT_STACK] = "Max stack size",
	[RLIMIT_CORE] = "Max core file size",
	[RLIMIT_RSS] = "Max resident set",
	[RLIMIT_NPROC] = "Max processes",
	[RLIMIT_NOFILE] = "Max open files",
	[RLIMIT_MEMLOCK] = "Max locked memory",
	[RLIMIT_AS] = "Max address space",
	[RLIMIT_LOCKS] = "Max file locks",
	[RLIMIT_SIGPENDING] = "Max pending signals",
	[RLIMIT_MSGQUEUE] = "Max msgqueue size",
	[RLIMIT_NICE] = "Max nice priority",
	[RLIMIT_RTPRIO] = "Max realtime priority",
	[RLIMIT_RTTIME] = "Max realtime timeout",
};

static int parse_limit(const char *s, rlim64_t *out)
{
	char *end;
	if (strcmp(s, "unlimited") == 0) {
		*out = RLIM64_INFINITY;
		return 0;
	}
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -1 : 0;
}

/* Fills *lim with task pid's limit for resource res from /proc/PID/limits; 0 on success. */
static int limits_from_proc(long pid, long res, struct rlimit64 *lim)
{
	char path[64], line[256], soft[32], hard[32];
	int ret = -1;
	FILE *f;

	if (pid <= 0 || res < 0 || res >= RLIM_NLIMITS || !rows[res])
		return -1;
	snprintf(path, sizeof(path), "/proc/%ld/limits", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(rows[res]);
		if (strncmp(line, rows[res], n) != 0 || line[n] != ' ')
			continue;
		if (sscanf(line + n, "%31s %31s", soft, hard) == 2 && parse_limit(soft, &lim->rlim_cur) == 0 &&
		    parse_limit(hard, &lim->rlim_max) == 0)
			ret = 0;
		break;
	}
	fclose(f);
	return ret;
}

long syscall(long number, ...)
{
	static long (*real)(long, ...);
	long a1, a2, a3, a4, a5, a6, r;
	va_list ap;

	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	/* The generic form of a syscall wrapper: six register-sized arguments, used or not. */
	va_start(ap, number);
	a1 = va_arg(ap, long);
	a2 = va_arg(ap, long);
	a3 = va_arg(ap, long);
	a4 = va_arg(ap, long);
	a5 = va_arg(ap, long);
	a6 = va_arg(ap, long);
	va_end(ap);
	r = real(number, a1, a2, a3, a4, a5, a6);
	if (r == -1 && errno == EPERM && number == SYS_prlimit64 && a3 == 0 && a4 != 0) {
		if (limits_from_proc(a1, a2, (struct rlimit64 *)a4) == 0)
			return 0;
		errno = EPERM;
	}
	return r;
}
