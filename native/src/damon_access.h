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

/* Bumped whenever a function, a signature or a struct changes (beneath.h and damon_madvise.h too); the loader checks it. */
#define DA_ABI_VERSION 6

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
	DA_OP_ARMED = 5,	/* armed list not in ascending page order: err_offset is the entry */
};

/* System calls of one call, by file (da_stats.nr_io). */
enum da_io {
	DA_IO_PAGEMAP_READ = 0,
	DA_IO_KPAGEFLAGS_READ = 1,
	DA_IO_BITMAP_READ = 2,
	DA_IO_BITMAP_WRITE = 3,
	DA_NR_IO = 4,
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
	uint32_t nr_reused;	/* current pages still on the frame armed for them: no kpageflags read */
	uint32_t nr_reverified;	/* reused pages that read as accessed, confirmed through kpageflags */
	uint32_t nr_io[DA_NR_IO]; /* pread/pwrite calls per enum da_io, retries included */
	int32_t err_errno;	/* on failure: the errno */
	int32_t err_file;	/* on failure: enum da_file */
	int32_t err_op;		/* on failure: enum da_op */
	uint64_t err_offset;	/* on failure: byte offset in err_file (or argument index) */
};

/*
 * What arming learned about one sampled page, so that its check can trust it
 * while the page still maps the same frame: no kpageflags read, no head page
 * search.  Calls write these sorted by vpn, one per page armed.
 */
struct da_armed {
	uint64_t vpn;		/* virtual page number */
	uint64_t pfn;		/* the frame it mapped when armed */
	uint64_t head;		/* the frame whose idle bit was set for it (pfn, or its THP head) */
};

uint32_t da_abi_version(void);
uint32_t da_page_size(void);

/*
 * One sampling interval of one target.  For each of the n_cur current
 * addresses (armed by an earlier call), sets accessed[i] to 1 if its page
 * was accessed since it was marked idle, else 0 (not present, PFN 0, or not
 * tracked count as not accessed).  Then marks the pages of the n_next next
 * addresses idle.
 *
 * armed[0..n_armed) is what the earlier calls wrote to their armed_out (may
 * be empty: every current page is then resolved afresh).  This call writes
 * the pages it armed to armed_out (room for n_next entries; must not overlap
 * armed) and their number to *n_armed_out.
 * Returns 0, or -errno with st->err_* saying where.
 */
int da_check_and_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
			 const double *cur, uint32_t n_cur, uint8_t *accessed,
			 const double *next, uint32_t n_next,
			 const struct da_armed *armed, uint32_t n_armed,
			 struct da_armed *armed_out, uint32_t *n_armed_out,
			 struct da_stats *st);

/*
 * Marks the pages of n addresses idle (the first interval, re-armed regions).
 * armed_out (room for n_armed + n entries; must not overlap armed) receives
 * armed[] with the pages of addrs[] replaced by what this call armed.
 */
int da_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
	       const double *addrs, uint32_t n,
	       const struct da_armed *armed, uint32_t n_armed,
	       struct da_armed *armed_out, uint32_t *n_armed_out,
	       struct da_stats *st);

/*
 * Whether PFNs are visible through the given pagemap of the calling process
 * (/proc/self/pagemap): reads the entry of a page of this function's stack.
 * Returns 1 visible, 0 read as zero (no CAP_SYS_ADMIN), or -errno.
 */
int da_pfn_visible(int self_pagemap_fd, struct da_stats *st);

#endif /* DAMON_ACCESS_H */
