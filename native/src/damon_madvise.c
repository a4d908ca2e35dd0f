// SPDX-License-Identifier: GPL-2.0
/*
 * pidfd_open and process_madvise through syscall(2) (see damon_madvise.h).
 */
#define _GNU_SOURCE
#include "damon_madvise.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* The same numbers on every architecture (asm-generic unified table). */
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif

/* The kernel takes at most UIO_MAXIOV (1024) iovecs a call; IOV_MAX is its libc name. */
#ifdef IOV_MAX
#define DA_IOV_BATCH IOV_MAX
#else
#define DA_IOV_BATCH 1024
#endif

int da_pidfd_open(int32_t pid)
{
	long fd;

	if (pid <= 0)
		return -EINVAL;
	fd = syscall(SYS_pidfd_open, (pid_t)pid, 0U);
	return fd < 0 ? -errno : (int)fd;
}

int da_process_madvise(int pidfd, const uint64_t *ranges, uint32_t n, int32_t advice,
		       uint64_t *advised_out, uint32_t *failed_out)
{
	struct iovec iov[DA_IOV_BATCH];
	uint64_t advised = 0;
	uint32_t i = 0;

	*advised_out = 0;
	*failed_out = n;
	while (i < n) {
		uint32_t batch = 0;
		uint64_t total = 0;
		long r;

		while (batch < DA_IOV_BATCH && i + batch < n) {
			uint64_t start = ranges[2 * (i + batch)];
			uint64_t end = ranges[2 * (i + batch) + 1];

			if (end < start || end - start > (uint64_t)SSIZE_MAX - total)
				break;
			iov[batch].iov_base = (void *)(uintptr_t)start;
			iov[batch].iov_len = (size_t)(end - start);
			total += end - start;
			batch++;
		}
		if (batch == 0) {
			/* A reversed range, or one that cannot share a call: refuse it by name. */
			*advised_out = advised;
			*failed_out = i;
			return -EINVAL;
		}
		r = syscall(SYS_process_madvise, pidfd, iov, (size_t)batch, advice, 0U);
		if (r < 0) {
			*advised_out = advised;
			*failed_out = i;
			return -errno;
		}
		advised += (uint64_t)r;
		if ((uint64_t)r < total) {
			/*
			 * The kernel stopped at a range it refused, after advising
			 * the whole ranges before it (the bytes it returned): skip
			 * those and ask again for the refused one alone, to learn why.
			 */
			uint64_t done = (uint64_t)r;
			uint32_t k = 0;

			while (k < batch && done > 0 && done >= iov[k].iov_len) {
				done -= iov[k].iov_len;
				k++;
			}
			i += k;
			if (k == batch)
				continue;
			r = syscall(SYS_process_madvise, pidfd, &iov[k], (size_t)1, advice, 0U);
			if (r < 0) {
				*advised_out = advised;
				*failed_out = i;
				return -errno;
			}
			/* Refused only the first time (a transient refusal): carry on after it. */
			advised += (uint64_t)r;
			i++;
			continue;
		}
		i += batch;
	}
	*advised_out = advised;
	return 0;
}

int da_madvise_probe(int32_t advice)
{
	/*
	 * One page at address 0 of this process: never mapped, so a kernel that
	 * knows the advice answers ENOMEM without touching anything, and one that
	 * does not answers EINVAL before looking at the range.
	 */
	struct iovec iov = { .iov_base = (void *)0, .iov_len = (size_t)sysconf(_SC_PAGESIZE) };
	long fd = syscall(SYS_pidfd_open, getpid(), 0U);
	long r;
	int err;

	if (fd < 0)
		return -errno;
	r = syscall(SYS_process_madvise, (int)fd, &iov, (size_t)1, advice, 0U);
	err = r < 0 ? errno : 0;
	close((int)fd);
	if (err == ENOMEM || err == 0)
		return 0;
	return -err;
}
