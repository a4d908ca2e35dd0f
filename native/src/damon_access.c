// SPDX-License-Identifier: GPL-2.0
/*
 * Access checks through idle page tracking (see damon_access.h).
 *
 * One call resolves every sampled virtual address to the page frame that
 * carries its idle flag (pagemap -> PFN -> head page via kpageflags), then
 * reads or writes the bitmap once per distinct page: samples that share a
 * page or a huge page share one check, as DAMON's vaddr operations do.
 * Reads of neighbouring pagemap and kpageflags entries are gathered into one
 * pread; bitmap reads never cover words nobody asked for, because reading a
 * bitmap word makes the kernel walk the reverse mappings of its idle pages.
 */
#define _GNU_SOURCE
#include "damon_access.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PM_PFN_MASK		((1ULL << 55) - 1)
#define PM_PRESENT		(1ULL << 63)

#define KPF_LRU			(1ULL << 5)
#define KPF_COMPOUND_HEAD	(1ULL << 15)
#define KPF_COMPOUND_TAIL	(1ULL << 16)
#define KPF_THP			(1ULL << 22)

/* Entries this close (in 8-byte words) are read with one pread. */
#define GATHER_SPAN		64
/* No THP is larger than 2^this pages; give up looking for a head beyond. */
#define HEAD_MAX_ORDER		18

struct ctx {
	int pagemap_fd;
	int kpageflags_fd;
	int bitmap_fd;
	struct da_stats *st;
	uint64_t arg_base;	/* index of addrs[0] in the caller's current+next list */
};

/* An 8-byte word index (virtual page, PFN or bitmap word) and where it came from. */
struct ref {
	uint64_t key;
	uint32_t pos;
};

static unsigned int page_shift(void)
{
	static unsigned int shift;

	if (!shift) {
		long sz = sysconf(_SC_PAGESIZE);
		unsigned int s = 0;

		if (sz <= 0)
			sz = 4096;
		while ((1L << s) < sz)
			s++;
		shift = s;
	}
	return shift;
}

uint32_t da_abi_version(void)
{
	return DA_ABI_VERSION;
}

uint32_t da_page_size(void)
{
	return 1U << page_shift();
}

static int fail(struct ctx *c, int err, int file, int op, uint64_t offset)
{
	c->st->err_errno = err;
	c->st->err_file = file;
	c->st->err_op = op;
	c->st->err_offset = offset;
	return -err;
}

static int cmp_ref(const void *a, const void *b)
{
	const struct ref *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/*
 * Reads n words starting at word index first.  Retries EINTR and short reads
 * (sysfs hands out at most a page per read); stops at end of file.  *got is
 * the number of whole words read.  Returns 0 or -errno.
 */
static int read_words(int fd, uint64_t first, uint64_t *buf, size_t n, size_t *got)
{
	size_t want = n * 8, done = 0;
	off_t off = (off_t)(first * 8);

	*got = 0;
	while (done < want) {
		ssize_t r = pread(fd, (char *)buf + done, want - done, off + (off_t)done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done / 8;
	return 0;
}

/*
 * Writes n words starting at word index first, retrying EINTR and short
 * writes.  The bitmap refuses writes past the last PFN with ENXIO (or a zero
 * count): that ends the write like end of file.  *put = whole words written.
 */
static int write_words(int fd, uint64_t first, const uint64_t *buf, size_t n, size_t *put)
{
	size_t want = n * 8, done = 0;
	off_t off = (off_t)(first * 8);

	*put = 0;
	while (done < want) {
		ssize_t r = pwrite(fd, (const char *)buf + done, want - done, off + (off_t)done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENXIO)
				break;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*put = done / 8;
	return 0;
}

/*
 * Reads the words at the m sorted, distinct indices keys[] into vals[];
 * have[j] says whether the file had word j.  Indices closer than GATHER_SPAN
 * share one pread; with contiguous set, only adjacent indices do.
 */
static int gather(struct ctx *c, int file, int fd, const uint64_t *keys, size_t m,
		  uint64_t *vals, uint8_t *have, int contiguous)
{
	uint64_t buf[GATHER_SPAN];
	size_t s = 0;

	while (s < m) {
		size_t e = s + 1, got, j;
		uint64_t first = keys[s];
		int r;

		while (e < m && keys[e] - first < GATHER_SPAN &&
		       (!contiguous || keys[e] == keys[e - 1] + 1))
			e++;
		r = read_words(fd, first, buf, (size_t)(keys[e - 1] - first + 1), &got);
		if (r)
			return fail(c, -r, file, DA_OP_READ, first * 8);
		for (j = s; j < e; j++) {
			uint64_t i = keys[j] - first;

			have[j] = i < got;
			vals[j] = have[j] ? buf[i] : 0;
			if (!have[j])
				c->st->nr_short++;
		}
		s = e;
	}
	return 0;
}

/*
 * The head page of the THP whose tail is pfn.  Folios are naturally aligned: the
 * head of an order-k folio is its tail's PFN rounded down to 2^k.  So the head is
 * the first compound head among pfn rounded down to 2^1, 2^2, ...; the candidates
 * before it are tails of the same folio.  That is a few one-word reads where a
 * scan down the PFNs would read hundreds of kpageflags words (the kernel computes
 * each).  Sets *head, *hflags and *span (2^k: [head, head + span) is known to be
 * in the folio) and returns 1; returns 0 if there is none (split or freed meanwhile).
 */
static int find_head(struct ctx *c, uint64_t pfn, uint64_t *head, uint64_t *hflags,
		     uint64_t *span)
{
	uint64_t prev = pfn;
	unsigned int k;

	for (k = 1; k <= HEAD_MAX_ORDER; k++) {
		uint64_t cand = pfn & ~((1ULL << k) - 1), flags;
		size_t got;
		int r;

		if (cand == prev)
			continue;
		prev = cand;
		r = read_words(c->kpageflags_fd, cand, &flags, 1, &got);
		if (r)
			return fail(c, -r, DA_FILE_KPAGEFLAGS, DA_OP_READ, cand * 8);
		if (!got) {
			c->st->nr_short++;
			return 0;
		}
		if (flags & KPF_COMPOUND_HEAD) {
			*head = cand;
			*hflags = flags;
			*span = 1ULL << k;
			return 1;
		}
		if (!(flags & KPF_COMPOUND_TAIL))
			return 0;
	}
	return 0;
}

static int to_vpn(struct ctx *c, const double *addrs, uint32_t i, uint64_t *vpn)
{
	double a = addrs[i];

	/* NaN fails both comparisons. */
	if (!(a >= 0 && a < 18446744073709551616.0))
		return fail(c, EINVAL, DA_FILE_NONE, DA_OP_ARG, c->arg_base + i);
	*vpn = (uint64_t)a >> page_shift();
	return 0;
}

/*
 * Resolves n addresses to the PFN whose idle flag tells their accesses:
 * heads[i] = that PFN, or 0 when there is nothing to check (not present,
 * PFN hidden, page not tracked).  Counts the outcomes in the stats.
 */
static int resolve(struct ctx *c, const double *addrs, uint32_t n, uint64_t *heads)
{
	struct ref *refs = NULL, *prefs = NULL;
	uint64_t *keys = NULL, *vals = NULL, *pfn_head = NULL;
	uint8_t *have = NULL, *pfn_tail = NULL;
	uint32_t *upos = NULL;
	uint64_t last_head = 0, last_hflags = 0, last_span = 0;
	size_t m = 0, q = 0, j, k;
	int r = 0;

	if (!n)
		return 0;
	refs = malloc(n * sizeof(*refs));
	prefs = malloc(n * sizeof(*prefs));
	keys = malloc(n * sizeof(*keys));
	vals = malloc(n * sizeof(*vals));
	pfn_head = malloc(n * sizeof(*pfn_head));
	have = malloc(n);
	pfn_tail = malloc(n);
	upos = malloc(n * sizeof(*upos));
	if (!refs || !prefs || !keys || !vals || !pfn_head || !have || !pfn_tail || !upos) {
		r = fail(c, ENOMEM, DA_FILE_NONE, DA_OP_ALLOC, 0);
		goto out;
	}

	/* Distinct virtual pages, sorted: upos[i] = index of address i's page. */
	for (j = 0; j < n; j++) {
		r = to_vpn(c, addrs, (uint32_t)j, &refs[j].key);
		if (r)
			goto out;
		refs[j].pos = (uint32_t)j;
	}
	qsort(refs, n, sizeof(*refs), cmp_ref);
	for (j = 0; j < n; j++) {
		if (!m || keys[m - 1] != refs[j].key)
			keys[m++] = refs[j].key;
		upos[refs[j].pos] = (uint32_t)(m - 1);
	}

	r = gather(c, DA_FILE_PAGEMAP, c->pagemap_fd, keys, m, vals, have, 0);
	if (r)
		goto out;

	/* Present pages with a PFN, sorted by PFN; the rest check nothing. */
	for (k = 0; k < m; k++) {
		uint64_t e = vals[k];

		pfn_head[k] = 0;
		if (!have[k] || !(e & PM_PRESENT)) {
			c->st->nr_not_present++;
		} else if (!(e & PM_PFN_MASK)) {
			c->st->nr_pfn_zero++;
		} else {
			prefs[q].key = e & PM_PFN_MASK;
			prefs[q].pos = (uint32_t)k;
			q++;
		}
	}
	qsort(prefs, q, sizeof(*prefs), cmp_ref);
	m = 0;
	for (j = 0; j < q; j++)
		if (!m || keys[m - 1] != prefs[j].key)
			keys[m++] = prefs[j].key;

	r = gather(c, DA_FILE_KPAGEFLAGS, c->kpageflags_fd, keys, m, vals, have, 0);
	if (r)
		goto out;

	/*
	 * keys[k] -> its head page in vals[k] (0: untracked); pfn_tail[k] if it was a
	 * tail.  keys[] is sorted, so tails of one folio come together: the last head
	 * found serves them all.
	 */
	for (k = 0; k < m; k++) {
		uint64_t flags = vals[k], pfn = keys[k];

		pfn_tail[k] = 0;
		if (!have[k]) {
			vals[k] = 0;
			continue;
		}
		if (flags & KPF_COMPOUND_TAIL) {
			uint64_t head = 0, hflags = 0;
			int found = 0;

			/* Only THPs are on the LRU; other compound pages (hugetlb) are not tracked. */
			if ((flags & KPF_THP) && last_span && pfn - last_head < last_span) {
				head = last_head;
				hflags = last_hflags;
				found = 1;
			} else if (flags & KPF_THP) {
				found = find_head(c, pfn, &head, &hflags, &last_span);
				if (found < 0) {
					r = found;
					goto out;
				}
				last_head = found ? head : 0;
				last_hflags = found ? hflags : 0;
				if (!found)
					last_span = 0;
			}
			if (!found) {
				vals[k] = 0;
				continue;
			}
			pfn = head;
			flags = hflags;
			pfn_tail[k] = 1;
		}
		/* The kernel ignores the idle flag of pages off the LRU; it always reads 0. */
		vals[k] = (flags & KPF_LRU) ? pfn : 0;
	}

	/* Back to the virtual pages (prefs is sorted like keys), then to the addresses. */
	for (j = 0, k = 0; j < q; j++) {
		while (keys[k] != prefs[j].key)
			k++;
		pfn_head[prefs[j].pos] = vals[k];
		if (!vals[k])
			c->st->nr_untracked++;
		else if (pfn_tail[k])
			c->st->nr_huge_tail++;
	}
	for (j = 0; j < n; j++)
		heads[j] = pfn_head[upos[j]];
out:
	free(refs);
	free(prefs);
	free(keys);
	free(vals);
	free(pfn_head);
	free(have);
	free(pfn_tail);
	free(upos);
	return r;
}

/* Sorts the non-zero heads[] with their positions into refs; returns how many. */
static size_t sort_heads(const uint64_t *heads, uint32_t n, struct ref *refs)
{
	size_t q = 0, j;

	for (j = 0; j < n; j++) {
		if (heads[j]) {
			refs[q].key = heads[j];
			refs[q].pos = (uint32_t)j;
			q++;
		}
	}
	qsort(refs, q, sizeof(*refs), cmp_ref);
	return q;
}

/* accessed[i] = idle bit of heads[i] is clear; 0 where there is no page to check. */
static int check(struct ctx *c, const uint64_t *heads, uint32_t n, uint8_t *accessed)
{
	struct ref *refs = malloc((n ? n : 1) * sizeof(*refs));
	uint64_t *words = calloc(n ? n : 1, sizeof(*words));
	uint64_t *vals = malloc((n ? n : 1) * sizeof(*vals));
	uint8_t *have = malloc(n ? n : 1);
	size_t q, m = 0, j, w = 0;
	int r = 0;

	if (!refs || !words || !vals || !have) {
		r = fail(c, ENOMEM, DA_FILE_NONE, DA_OP_ALLOC, 0);
		goto out;
	}
	if (n)
		memset(accessed, 0, n);
	q = sort_heads(heads, n, refs);
	for (j = 0; j < q; j++) {
		if (!j || refs[j].key != refs[j - 1].key)
			c->st->nr_checked++;
		if (!m || words[m - 1] != refs[j].key / 64)
			words[m++] = refs[j].key / 64;
	}
	r = gather(c, DA_FILE_BITMAP, c->bitmap_fd, words, m, vals, have, 1);
	if (r)
		goto out;
	for (j = 0; j < q; j++) {
		uint64_t pfn = refs[j].key;

		while (words[w] != pfn / 64)
			w++;
		/* A word the bitmap did not have tells nothing: not accessed. */
		accessed[refs[j].pos] = have[w] && !((vals[w] >> (pfn % 64)) & 1);
	}
out:
	free(refs);
	free(words);
	free(vals);
	free(have);
	return r;
}

/* Sets the idle bit of every non-zero heads[i], one write per run of adjacent words. */
static int arm(struct ctx *c, const uint64_t *heads, uint32_t n)
{
	struct ref *refs = malloc((n ? n : 1) * sizeof(*refs));
	uint64_t buf[GATHER_SPAN];
	size_t q, j = 0;
	int r = 0;

	if (!refs)
		return fail(c, ENOMEM, DA_FILE_NONE, DA_OP_ALLOC, 0);
	q = sort_heads(heads, n, refs);
	while (j < q) {
		uint64_t first = refs[j].key / 64, last = first;
		size_t nw, put;

		memset(buf, 0, sizeof(buf));
		for (; j < q; j++) {
			uint64_t pfn = refs[j].key, word = pfn / 64;

			if (word != last && (word != last + 1 || word - first >= GATHER_SPAN))
				break;
			if (j && refs[j - 1].key == pfn)
				continue;
			buf[word - first] |= 1ULL << (pfn % 64);
			c->st->nr_armed++;
			last = word;
		}
		nw = (size_t)(last - first + 1);
		r = write_words(c->bitmap_fd, first, buf, nw, &put);
		if (r) {
			r = fail(c, -r, DA_FILE_BITMAP, DA_OP_WRITE, first * 8);
			break;
		}
		if (put < nw)
			c->st->nr_short += (uint32_t)(nw - put);
	}
	free(refs);
	return r;
}

static void init_ctx(struct ctx *c, int pagemap_fd, int kpageflags_fd, int bitmap_fd,
		     struct da_stats *st)
{
	memset(st, 0, sizeof(*st));
	c->pagemap_fd = pagemap_fd;
	c->kpageflags_fd = kpageflags_fd;
	c->bitmap_fd = bitmap_fd;
	c->st = st;
	c->arg_base = 0;
}

static int prepare(struct ctx *c, const double *addrs, uint32_t n)
{
	uint64_t *heads = malloc((n ? n : 1) * sizeof(*heads));
	int r;

	if (!heads)
		return fail(c, ENOMEM, DA_FILE_NONE, DA_OP_ALLOC, 0);
	r = resolve(c, addrs, n, heads);
	if (!r)
		r = arm(c, heads, n);
	free(heads);
	return r;
}

int da_check_and_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
			 const double *cur, uint32_t n_cur, uint8_t *accessed,
			 const double *next, uint32_t n_next,
			 struct da_stats *st)
{
	struct ctx c;
	uint64_t *heads;
	int r;

	init_ctx(&c, pagemap_fd, kpageflags_fd, bitmap_fd, st);
	heads = malloc((n_cur ? n_cur : 1) * sizeof(*heads));
	if (!heads)
		return fail(&c, ENOMEM, DA_FILE_NONE, DA_OP_ALLOC, 0);
	/* Check before arming: a next sample may fall on a page checked now. */
	r = resolve(&c, cur, n_cur, heads);
	if (!r)
		r = check(&c, heads, n_cur, accessed);
	free(heads);
	if (r)
		return r;
	c.arg_base = n_cur;
	return prepare(&c, next, n_next);
}

int da_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
	       const double *addrs, uint32_t n, struct da_stats *st)
{
	struct ctx c;

	init_ctx(&c, pagemap_fd, kpageflags_fd, bitmap_fd, st);
	return prepare(&c, addrs, n);
}

int da_pfn_visible(int self_pagemap_fd, struct da_stats *st)
{
	volatile uint64_t probe = 1;	/* written, so its stack page is present */
	struct ctx c;
	uint64_t entry;
	size_t got;
	int r;

	init_ctx(&c, self_pagemap_fd, -1, -1, st);
	probe++;
	r = read_words(self_pagemap_fd, (uint64_t)(uintptr_t)&probe >> page_shift(), &entry, 1, &got);
	if (r)
		return fail(&c, -r, DA_FILE_PAGEMAP, DA_OP_READ,
			    ((uint64_t)(uintptr_t)&probe >> page_shift()) * 8);
	if (!got || !(entry & PM_PRESENT)) {
		st->nr_not_present = 1;
		return 0;
	}
	return (entry & PM_PFN_MASK) != 0;
}
