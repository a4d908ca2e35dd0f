/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Advising another process's memory: pidfd_open(2) and process_madvise(2),
 * called through syscall(2) so that building needs neither a recent C library
 * nor recent kernel headers.  DAMOS actions on a process (pageout, cold,
 * willneed, collapse) go through here.
 *
 * Every call returns 0 or a descriptor on success, -errno on failure.
 */
#ifndef DAMON_MADVISE_H
#define DAMON_MADVISE_H

#include <stdint.h>

/* The kernel's advice values (include/uapi/asm-generic/mman-common.h). */
#define DA_MADV_WILLNEED	3
#define DA_MADV_COLD		20
#define DA_MADV_PAGEOUT		21
#define DA_MADV_COLLAPSE	25

/* pidfd_open(pid, 0): a descriptor of the process (close-on-exec), or -errno. */
int da_pidfd_open(int32_t pid);

/*
 * process_madvise(pidfd, ranges, advice) over n ranges given as pairs
 * ranges[2i] = start, ranges[2i+1] = end (page-aligned start, [start, end)),
 * in batches of at most IOV_MAX iovecs.  *advised_out is the number of bytes
 * advised (whole ranges, in order).  It stops at the first range the kernel
 * refuses: the return is then -errno and *failed_out that range's index;
 * otherwise 0 and *failed_out = n.
 */
int da_process_madvise(int pidfd, const uint64_t *ranges, uint32_t n, int32_t advice,
		       uint64_t *advised_out, uint32_t *failed_out);

/*
 * Whether this kernel has process_madvise(2) with `advice` for a process:
 * 0 when it has, else -errno (ENOSYS: no such system call; EINVAL: the
 * advice is unknown to it, e.g. MADV_COLLAPSE before 6.1 or without THP).
 */
int da_madvise_probe(int32_t advice);

#endif /* DAMON_MADVISE_H */
