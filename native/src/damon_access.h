/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Access checks of another process's pages through the idle page tracking
 * bitmap: /proc/PID/pagemap (virtual page -> PFN), /proc/kpageflags (to find
 * the head page of a transparent huge page) and /sys/kernel/mm/page_idle/bitmap.
 *
 * Every entry point takes open file descriptors, so tests can point them at
 * fake files.  Addresses come as doubles: the callers pass page-aligned
 * addresses, which a double holds exactly, and JavaScript fills a Float64Array
 * without allocating a BigInt per sample.
 */
#ifndef DAMON_ACCESS_H
#define DAMON_ACCESS_H

#include <stdint.h>

/* Bumped whenever a signature or struct da_stats changes; the loader checks it. */
#define DA_ABI_VERSION 1

/* Which file an error came from (da_stats.err_file). */
enum da_file {
	DA_FILE_NONE = 0,
	DA_FILE_PAGEMAP = 1,
	DA_FILE_KPAGEFLAGS = 2,
	DA_FILE_BITMAP = 3,
};

/* What failed (da_stats.err_op). */
enum da_op {
	DA_OP_NONE = 0,
	DA_OP_READ = 1,
	DA_OP_WRITE = 2,
	DA_OP_ALLOC = 3,	/* out of memory */
	DA_OP_ARG = 4,		/* bad address: err_offset is its index, next[] counted after cur[] */
};

/*
 * Filled by every call.  Page counts are over the distinct virtual pages the
 * call resolved (current and next samples together).
 */
struct da_stats {
	uint32_t nr_checked;	/* distinct (head) pages whose idle bit was read */
	uint32_t nr_armed;	/* distinct (head) pages marked idle */
	uint32_t nr_not_present; /* unmapped, swapped out or not yet faulted in */
	uint32_t nr_pfn_zero;	/* present but the PFN read as 0: no CAP_SYS_ADMIN */
	uint32_t nr_untracked;	/* present but page_idle cannot track it (not on the LRU, hugetlb) */
	uint32_t nr_huge_tail;	/* THP tail pages resolved to their head page */
	uint32_t nr_short;	/* 8-byte words a file did not have (it ended early) */
	int32_t err_errno;	/* on failure: the errno */
	int32_t err_file;	/* on failure: enum da_file */
	int32_t err_op;		/* on failure: enum da_op */
	uint64_t err_offset;	/* on failure: byte offset in err_file (or argument index) */
};

uint32_t da_abi_version(void);
uint32_t da_page_size(void);

/*
 * One sampling interval of one target.  For each of the n_cur current
 * addresses (armed by the previous call), sets accessed[i] to 1 if its page
 * was accessed since it was marked idle, else 0 (not present, PFN 0, or not
 * tracked count as not accessed).  Then marks the pages of the n_next next
 * addresses idle.  Returns 0, or -errno with st->err_* saying where.
 */
int da_check_and_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
			 const double *cur, uint32_t n_cur, uint8_t *accessed,
			 const double *next, uint32_t n_next,
			 struct da_stats *st);

/* Marks the pages of n addresses idle (the first interval, re-armed regions). */
int da_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
	       const double *addrs, uint32_t n, struct da_stats *st);

/*
 * Whether PFNs are visible through the given pagemap of the calling process
 * (/proc/self/pagemap): reads the entry of a page of this function's stack.
 * Returns 1 visible, 0 read as zero (no CAP_SYS_ADMIN), or -errno.
 */
int da_pfn_visible(int self_pagemap_fd, struct da_stats *st);

#endif /* DAMON_ACCESS_H */
