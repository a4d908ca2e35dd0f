// SPDX-License-Identifier: GPL-2.0
/*
 * Access checks through idle page tracking (see damon_access.h).
 *
 * One call resolves every sampled virtual address, current and next together,
 * to the page frame that carries its idle flag (pagemap -> PFN -> head page via
 * kpageflags), reads the bitmap once per distinct page checked and writes it
 * once per run of pages armed: samples that share a page or a huge page share
 * one check, as DAMON's vaddr operations do.
 *
 * The cost is almost all system calls (a few tenths of a microsecond each), so
 * the call makes as few as it can without changing an answer:
 * - wanted words of pagemap and kpageflags close to each other share one pread,
 *   as long as reading the words between costs the kernel less than a call;
 * - a current page that still maps the frame armed for it is checked through
 *   what arming found (struct da_armed): no kpageflags read, no head search.
 *   Only if its bit then reads "accessed" does kpageflags confirm the frame is
 *   still tracked (the kernel reads 0 for a page off the LRU) and its head the
 *   same.  An idle bit needs no confirming: the kernel reports 1 only for an
 *   idle page on the LRU.  What this cannot see: a THP split in place between
 *   arming and checking, whose former head stayed idle while the sampled former
 *   tail was accessed, counts as not accessed for that one interval;
 * - a THP folio found once in a call serves every later tail inside it with no
 *   read of the tail's own flags; its known extent grows one read at a time
 *   (see extend()) instead of a new head search per tail.
 * Bitmap reads never cover words nobody asked for: reading a bitmap word makes
 * the kernel walk the reverse mappings of its idle pages.  io_uring does not
 * pay here: procfs reads cannot complete inline and go through worker threads
 * (about 13 us a read instead of 0.24, measured).
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

/* Longest single transfer in 8-byte words: 4 KiB, what sysfs moves per call anyway. */
#define MAX_SPAN		512
/*
 * Two wanted words this close (in words) share one pread.  Measured on x86-64
 * (bench/page-idle.ts, last table): a pread costs 0.2-0.5 us, each extra word
 * read about 13-18 ns of pagemap (4 KiB pages; 3.5 ns under a huge page) or
 * 57 ns of kpageflags.
 */
#define PAGEMAP_GAP		32
#define KPAGEFLAGS_GAP		4
/* No THP is larger than 2^this pages; give up looking for a head beyond. */
#define HEAD_MAX_ORDER		18
/*
 * A folio found in a call is grown toward a later page only this close to its
 * head (a PMD-sized THP: 2 MiB of 4 KiB pages); farther pages are looked up by
 * their own flags, so that growing never spends reads on a page of another folio.
 */
#define FOLIO_REACH		512

struct ctx {
	int fd[4];		/* by enum da_file */
	struct da_stats *st;
};

/* An 8-byte word index (virtual page, PFN or bitmap word) and where it came from. */
struct ref {
	uint64_t key;
	uint64_t pos;
};

enum { USE_CUR = 1, USE_NEXT = 2 };

/* One distinct sampled virtual page of a call. */
struct page {
	uint64_t vpn;
	uint64_t pfn;		/* 0: nothing to check or arm (not present, PFN hidden) */
	uint64_t head;		/* frame whose idle bit tells its accesses, when resolved; 0: untracked */
	uint64_t cached;	/* head armed for it earlier, if it still maps that frame; else 0 */
	uint8_t use;		/* USE_CUR | USE_NEXT */
	uint8_t resolved;	/* head found through kpageflags in this call */
	uint8_t reused;		/* checked through cached, without kpageflags */
	uint8_t reverify;	/* reused, read as accessed: kpageflags confirms */
};

/*
 * THP folios found in this call, sorted by head: [head, head + span) is known
 * to be one folio; final once the page past it was seen not to be a tail.
 */
struct folio {
	uint64_t head;
	uint64_t span;
	uint64_t hflags;
	int final;
};

struct memo {
	struct folio *f;
	size_t n;
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
 * Reads n words of file starting at word index first.  Retries EINTR and short
 * reads (sysfs hands out at most a page per read); stops at end of file.  *got
 * is the number of whole words read.  Returns 0 or -errno (st->err_* set).
 */
static int read_words(struct ctx *c, int file, uint64_t first, uint64_t *buf, size_t n,
		      size_t *got)
{
	size_t want = n * 8, done = 0;
	off_t off = (off_t)(first * 8);

	*got = 0;
	while (done < want) {
		ssize_t r;

		/* enum da_io numbers the reads like enum da_file, one lower. */
		c->st->nr_io[file - 1]++;
		r = pread(c->fd[file], (char *)buf + done, want - done, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return fail(c, errno, file, DA_OP_READ, first * 8);
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done / 8;
	return 0;
}

/*
 * Writes n bitmap words starting at word index first, retrying EINTR and short
 * writes.  The bitmap refuses writes past the last PFN with ENXIO (or a zero
 * count): that ends the write like end of file.  *put = whole words written.
 */
static int write_words(struct ctx *c, uint64_t first, const uint64_t *buf, size_t n, size_t *put)
{
	size_t want = n * 8, done = 0;
	off_t off = (off_t)(first * 8);

	*put = 0;
	while (done < want) {
		ssize_t r;

		c->st->nr_io[DA_IO_BITMAP_WRITE]++;
		r = pwrite(c->fd[DA_FILE_BITMAP], (const char *)buf + done, want - done,
			   off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENXIO)
				break;
			return fail(c, errno, DA_FILE_BITMAP, DA_OP_WRITE, first * 8);
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
 * have[j] says whether the file had word j.  Indices at most gap apart share
 * one pread (gap 1: only adjacent ones), up to MAX_SPAN words per read.
 */
static int gather(struct ctx *c, int file, const uint64_t *keys, size_t m,
		  uint64_t *vals, uint8_t *have, uint64_t gap)
{
	uint64_t buf[MAX_SPAN];
	size_t s = 0;

	while (s < m) {
		size_t e = s + 1, got, j;
		uint64_t first = keys[s];
		int r;

		while (e < m && keys[e] - keys[e - 1] <= gap && keys[e] - first < MAX_SPAN)
			e++;
		r = read_words(c, file, first, buf, (size_t)(keys[e - 1] - first + 1), &got);
		if (r)
			return r;
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

/* One kpageflags word: returns 1, 0 if the file ends before it, or -errno. */
static int read_flags(struct ctx *c, uint64_t pfn, uint64_t *flags)
{
	size_t got;
	int r = read_words(c, DA_FILE_KPAGEFLAGS, pfn, flags, 1, &got);

	if (r)
		return r;
	if (!got) {
		c->st->nr_short++;
		return 0;
	}
	return 1;
}

/*
 * The head page of the THP whose tail is pfn.  Folios are naturally aligned: the
 * head of an order-k folio is its tail's PFN rounded down to 2^k.  So the head is
 * the first compound head among pfn rounded down to 2^1, 2^2, ...; the candidates
 * before it are tails of the same folio.  That is a few one-word reads where a
 * scan down the PFNs would read hundreds of kpageflags words (the kernel computes
 * each).  Fills f (head, its flags, and a span 2^k with [head, head + span) known
 * to be the folio) and returns 1; returns 0 if there is none (split or freed meanwhile).
 */
static int find_head(struct ctx *c, uint64_t pfn, struct folio *f)
{
	uint64_t prev = pfn;
	unsigned int k;

	for (k = 1; k <= HEAD_MAX_ORDER; k++) {
		uint64_t cand = pfn & ~((1ULL << k) - 1), flags;
		int r;

		if (cand == prev)
			continue;
		prev = cand;
		r = read_flags(c, cand, &flags);
		if (r <= 0)
			return r;
		if (flags & KPF_COMPOUND_HEAD) {
			f->head = cand;
			f->hflags = flags;
			f->span = 1ULL << k;
			f->final = 0;
			return 1;
		}
		if (!(flags & KPF_COMPOUND_TAIL))
			return 0;
	}
	return 0;
}

/*
 * Grows f's known extent until it covers pfn, or returns 0 if f's folio ends
 * before it (f is then final).  If the page just past
 * [head, head + span) is a tail, its folio is head's: a folio holding it
 * cannot start inside head's folio, nor contain head, so it starts at head,
 * and, being a naturally aligned power of two, spans at least twice as much.
 * Returns 1 covered, 0 not, or -errno.
 */
static int extend(struct ctx *c, struct folio *f, uint64_t pfn)
{
	while (pfn - f->head >= f->span) {
		uint64_t flags;
		int r;

		if (f->final || f->span >= (1ULL << HEAD_MAX_ORDER) || (f->head & (2 * f->span - 1))) {
			f->final = 1;	/* no larger folio can start at head */
			return 0;
		}
		r = read_flags(c, f->head + f->span, &flags);
		if (r < 0)
			return r;
		if (!r || !(flags & KPF_COMPOUND_TAIL)) {
			f->final = 1;
			return 0;
		}
		f->span *= 2;
	}
	return 1;
}

/* The memo entry with the greatest head <= pfn, or NULL. */
static struct folio *memo_below(struct memo *m, uint64_t pfn)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->f[mid].head <= pfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? &m->f[lo - 1] : NULL;
}

static void memo_add(struct memo *m, const struct folio *f)
{
	struct folio *below = memo_below(m, f->head);
	size_t at = below ? (size_t)(below - m->f) + 1 : 0;

	if (below && below->head == f->head) {
		*below = *f;	/* changed since it was found: keep the newest */
		return;
	}
	memmove(&m->f[at + 1], &m->f[at], (m->n - at) * sizeof(*f));
	m->f[at] = *f;
	m->n++;
}

/*
 * Whether pfn lies in a THP folio found earlier in this call: then that folio
 * tells its head without a read of pfn's own flags.  Returns 1 (*f filled),
 * 0 not, -errno.
 */
static int in_folio(struct ctx *c, struct memo *m, uint64_t pfn, struct folio *f)
{
	struct folio *below = memo_below(m, pfn);
	int r;

	if (!below)
		return 0;
	if (pfn - below->head < below->span)
		r = 1;
	else if (pfn - below->head < FOLIO_REACH)
		r = extend(c, below, pfn);
	else
		return 0;
	if (r > 0)
		*f = *below;
	return r;
}

/* Scratch arrays of one call, n entries each. */
struct scratch {
	struct ref *refs;
	uint64_t *keys;
	uint64_t *vals;
	uint8_t *have;
};

/*
 * Finds the head (0: untracked) of the nw pages which[] through kpageflags.
 * Pages mapping the same frame share one read; frames in a THP found earlier
 * in the call need none.
 */
static int resolve(struct ctx *c, struct page *pages, const size_t *which, size_t nw,
		   struct memo *m, struct scratch *s)
{
	size_t q = 0, j, k, e = 0;
	int r;

	for (j = 0; j < nw; j++) {
		s->refs[j].key = pages[which[j]].pfn;
		s->refs[j].pos = which[j];
	}
	qsort(s->refs, nw, sizeof(*s->refs), cmp_ref);
	for (j = 0; j < nw; j++)
		if (!q || s->keys[q - 1] != s->refs[j].key)
			s->keys[q++] = s->refs[j].key;

	/* keys[] ascending: the tails of one folio come together and share its head. */
	for (k = 0; k < q; k++) {
		uint64_t flags, pfn = s->keys[k];
		struct folio f;

		r = in_folio(c, m, pfn, &f);
		if (r < 0)
			return r;
		if (r) {
			s->vals[k] = (f.hflags & KPF_LRU) ? f.head : 0;
			continue;
		}
		if (k >= e) {
			/* This word and the wanted ones close after it, in one pread. */
			for (e = k + 1; e < q; e++)
				if (s->keys[e] - s->keys[e - 1] > KPAGEFLAGS_GAP ||
				    s->keys[e] - pfn >= MAX_SPAN)
					break;
			r = gather(c, DA_FILE_KPAGEFLAGS, &s->keys[k], e - k, &s->vals[k],
				   &s->have[k], KPAGEFLAGS_GAP);
			if (r)
				return r;
		}
		flags = s->vals[k];
		if (!s->have[k]) {
			s->vals[k] = 0;
			continue;
		}
		if (flags & KPF_COMPOUND_TAIL) {
			/* Only THPs are on the LRU; other compound pages (hugetlb) are not tracked. */
			r = (flags & KPF_THP) ? find_head(c, pfn, &f) : 0;
			if (r < 0)
				return r;
			if (!r) {
				s->vals[k] = 0;
				continue;
			}
			memo_add(m, &f);
			pfn = f.head;
			flags = f.hflags;
		}
		/* The kernel ignores the idle flag of pages off the LRU; it always reads 0. */
		s->vals[k] = (flags & KPF_LRU) ? pfn : 0;
	}
	for (j = 0, k = 0; j < nw; j++) {
		struct page *p = &pages[s->refs[j].pos];

		while (s->keys[k] != s->refs[j].key)
			k++;
		p->head = s->vals[k];
		p->resolved = 1;
	}
	return 0;
}

/*
 * refs[0..q): (head, position in accessed[]), sorted.  Reads each distinct
 * word once, adjacent words in one pread, and sets accessed[pos] = idle bit
 * clear.  A word the bitmap did not have tells nothing: not accessed.
 */
static int read_bits(struct ctx *c, const struct ref *refs, size_t q, uint8_t *accessed,
		     struct scratch *s)
{
	size_t m = 0, j, w = 0;
	int r;

	for (j = 0; j < q; j++) {
		if (!j || refs[j].key != refs[j - 1].key)
			c->st->nr_checked++;
		if (!m || s->keys[m - 1] != refs[j].key / 64)
			s->keys[m++] = refs[j].key / 64;
	}
	r = gather(c, DA_FILE_BITMAP, s->keys, m, s->vals, s->have, 1);
	if (r)
		return r;
	for (j = 0; j < q; j++) {
		uint64_t pfn = refs[j].key;

		while (s->keys[w] != pfn / 64)
			w++;
		accessed[refs[j].pos] = s->have[w] && !((s->vals[w] >> (pfn % 64)) & 1);
	}
	return 0;
}

/* Sets the idle bit of every refs[].key (sorted), one write per run of adjacent words. */
static int write_bits(struct ctx *c, const struct ref *refs, size_t q)
{
	uint64_t buf[MAX_SPAN];
	size_t j = 0;

	while (j < q) {
		uint64_t first = refs[j].key / 64, last = first;
		size_t nw, put;
		int r;

		memset(buf, 0, sizeof(buf));
		for (; j < q; j++) {
			uint64_t pfn = refs[j].key, word = pfn / 64;

			if (word != last && (word != last + 1 || word - first >= MAX_SPAN))
				break;
			if (j && refs[j - 1].key == pfn)
				continue;
			buf[word - first] |= 1ULL << (pfn % 64);
			c->st->nr_armed++;
			last = word;
		}
		nw = (size_t)(last - first + 1);
		r = write_words(c, first, buf, nw, &put);
		if (r)
			return r;
		if (put < nw)
			c->st->nr_short += (uint32_t)(nw - put);
	}
	return 0;
}

static int to_vpn(struct ctx *c, double a, uint64_t index, uint64_t *vpn)
{
	/* NaN fails both comparisons. */
	if (!(a >= 0 && a < 18446744073709551616.0))
		return fail(c, EINVAL, DA_FILE_NONE, DA_OP_ARG, index);
	*vpn = (uint64_t)a >> page_shift();
	return 0;
}

/* Everything one call allocates. */
struct call {
	struct ref *refs;	/* n: (vpn or head, sample position) */
	struct page *pages;	/* distinct virtual pages */
	size_t *upos;		/* n: page index of each sample */
	size_t *which;		/* page indices to resolve */
	struct folio *folios;
	struct scratch s;
};

static void free_call(struct call *k)
{
	free(k->refs);
	free(k->pages);
	free(k->upos);
	free(k->which);
	free(k->folios);
	free(k->s.refs);
	free(k->s.keys);
	free(k->s.vals);
	free(k->s.have);
}

static int alloc_call(struct ctx *c, struct call *k, size_t n)
{
	size_t a = n ? n : 1;

	memset(k, 0, sizeof(*k));
	k->refs = malloc(a * sizeof(*k->refs));
	k->pages = malloc(a * sizeof(*k->pages));
	k->upos = malloc(a * sizeof(*k->upos));
	k->which = malloc(a * sizeof(*k->which));
	k->folios = malloc(a * sizeof(*k->folios));
	k->s.refs = malloc(a * sizeof(*k->s.refs));
	k->s.keys = malloc(a * sizeof(*k->s.keys));
	k->s.vals = malloc(a * sizeof(*k->s.vals));
	k->s.have = malloc(a);
	if (!k->refs || !k->pages || !k->upos || !k->which || !k->folios || !k->s.refs ||
	    !k->s.keys || !k->s.vals || !k->s.have)
		return fail(c, ENOMEM, DA_FILE_NONE, DA_OP_ALLOC, 0);
	return 0;
}

/*
 * Distinct pages of the samples, sorted by vpn, their pagemap entries, and
 * what the earlier calls armed for those still on the same frame.
 */
static int map_pages(struct ctx *c, struct call *k, const double *cur, uint32_t n_cur,
		     const double *next, uint32_t n_next, const struct da_armed *armed,
		     uint32_t n_armed, size_t *np)
{
	size_t n = (size_t)n_cur + n_next, m = 0, j, a = 0;
	int r;

	for (j = 0; j < n; j++) {
		r = to_vpn(c, j < n_cur ? cur[j] : next[j - n_cur], j, &k->refs[j].key);
		if (r)
			return r;
		k->refs[j].pos = j;
	}
	qsort(k->refs, n, sizeof(*k->refs), cmp_ref);
	for (j = 0; j < n; j++) {
		if (!m || k->pages[m - 1].vpn != k->refs[j].key) {
			memset(&k->pages[m], 0, sizeof(k->pages[m]));
			k->pages[m++].vpn = k->refs[j].key;
		}
		k->pages[m - 1].use |= k->refs[j].pos < n_cur ? USE_CUR : USE_NEXT;
		k->upos[k->refs[j].pos] = m - 1;
	}

	for (j = 0; j < m; j++)
		k->s.keys[j] = k->pages[j].vpn;
	r = gather(c, DA_FILE_PAGEMAP, k->s.keys, m, k->s.vals, k->s.have, PAGEMAP_GAP);
	if (r)
		return r;
	for (j = 0; j < m; j++) {
		struct page *p = &k->pages[j];
		uint64_t e = k->s.vals[j];

		if (!k->s.have[j] || !(e & PM_PRESENT))
			c->st->nr_not_present++;
		else if (!(e & PM_PFN_MASK))
			c->st->nr_pfn_zero++;
		else
			p->pfn = e & PM_PFN_MASK;
		/* Both lists ascend by vpn: walk them together. */
		while (a < n_armed && armed[a].vpn < p->vpn)
			a++;
		if (a < n_armed && armed[a].vpn == p->vpn && p->pfn && armed[a].pfn == p->pfn)
			p->cached = armed[a].head;
	}
	*np = m;
	return 0;
}

/* Checks the current samples: accessed[i] for i < n_cur. */
static int check(struct ctx *c, struct call *k, uint32_t n_cur, uint8_t *accessed,
		 struct memo *memo)
{
	size_t q = 0, nw = 0, j;
	int r;

	if (n_cur)
		memset(accessed, 0, n_cur);
	for (j = 0; j < n_cur; j++) {
		struct page *p = &k->pages[k->upos[j]];
		uint64_t h = p->resolved ? p->head : p->cached;

		if (h) {
			k->refs[q].key = h;
			k->refs[q++].pos = j;
		}
	}
	qsort(k->refs, q, sizeof(*k->refs), cmp_ref);
	r = read_bits(c, k->refs, q, accessed, &k->s);
	if (r)
		return r;

	/*
	 * A page checked through what arming found and read as accessed: confirm
	 * with fresh kpageflags that its frame is still tracked through the same
	 * head.  (A bit that reads idle needs no confirming: the kernel sets it only
	 * for an idle page on the LRU.)
	 */
	for (j = 0; j < n_cur; j++) {
		struct page *p = &k->pages[k->upos[j]];

		if (p->reused && !p->reverify && accessed[j]) {
			p->reverify = 1;
			k->which[nw++] = k->upos[j];
		}
	}
	if (!nw)
		return 0;
	c->st->nr_reverified += (uint32_t)nw;
	r = resolve(c, k->pages, k->which, nw, memo, &k->s);
	if (r)
		return r;
	q = 0;
	for (j = 0; j < n_cur; j++) {
		struct page *p = &k->pages[k->upos[j]];

		if (!p->reverify || !accessed[j] || p->head == p->cached)
			continue;
		accessed[j] = 0;
		/* Now a different frame (split THP, say): its own bit tells, as without the cache. */
		if (p->head) {
			k->refs[q].key = p->head;
			k->refs[q++].pos = j;
		}
	}
	qsort(k->refs, q, sizeof(*k->refs), cmp_ref);
	return read_bits(c, k->refs, q, accessed, &k->s);
}

/* Arms the next samples' pages; writes what it armed (merged with armed[] if keep). */
static int arm(struct ctx *c, struct call *k, size_t m, const struct da_armed *armed,
	       uint32_t n_armed, int keep, struct da_armed *out, uint32_t *n_out)
{
	size_t q = 0, j, a = 0, o = 0;
	int r;

	for (j = 0; j < m; j++) {
		struct page *p = &k->pages[j];

		if ((p->use & USE_NEXT) && p->head) {
			k->refs[q].key = p->head;
			k->refs[q++].pos = j;
		}
	}
	qsort(k->refs, q, sizeof(*k->refs), cmp_ref);
	r = write_bits(c, k->refs, q);
	if (r)
		return r;

	for (j = 0; j < m; j++) {
		struct page *p = &k->pages[j];

		if (!(p->use & USE_NEXT))
			continue;
		/* Earlier entries below this page, then this page's own (if armed) replaces any. */
		while (keep && a < n_armed && armed[a].vpn < p->vpn)
			out[o++] = armed[a++];
		if (keep && a < n_armed && armed[a].vpn == p->vpn)
			a++;
		if (p->head) {
			out[o].vpn = p->vpn;
			out[o].pfn = p->pfn;
			out[o++].head = p->head;
		}
	}
	while (keep && a < n_armed)
		out[o++] = armed[a++];
	*n_out = (uint32_t)o;
	return 0;
}

static void count_pages(struct ctx *c, const struct call *k, size_t m)
{
	size_t j;

	for (j = 0; j < m; j++) {
		const struct page *p = &k->pages[j];
		uint64_t h = p->resolved ? p->head : p->cached;

		if (!p->pfn)
			continue;
		if (p->reused)
			c->st->nr_reused++;
		if (!h)
			c->st->nr_untracked++;
		else if (h != p->pfn)
			c->st->nr_huge_tail++;
	}
}

static int run(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
	       const double *cur, uint32_t n_cur, uint8_t *accessed,
	       const double *next, uint32_t n_next,
	       const struct da_armed *armed, uint32_t n_armed, int keep,
	       struct da_armed *out, uint32_t *n_out, struct da_stats *st)
{
	struct ctx c = { .fd = { -1, pagemap_fd, kpageflags_fd, bitmap_fd }, .st = st };
	struct call k;
	struct memo memo;
	size_t m, nw = 0, j;
	int r;

	memset(st, 0, sizeof(*st));
	*n_out = 0;
	for (j = 1; j < n_armed; j++)
		if (armed[j].vpn <= armed[j - 1].vpn)
			return fail(&c, EINVAL, DA_FILE_NONE, DA_OP_ARMED, j);
	r = alloc_call(&c, &k, (size_t)n_cur + n_next);
	if (r)
		goto out;
	memo.f = k.folios;
	memo.n = 0;
	r = map_pages(&c, &k, cur, n_cur, next, n_next, armed, n_armed, &m);
	if (r)
		goto out;

	/* Pages to arm get fresh flags; current ones only when their frame changed. */
	for (j = 0; j < m; j++) {
		struct page *p = &k.pages[j];

		if (!p->pfn)
			continue;
		if ((p->use & USE_NEXT) || !p->cached)
			k.which[nw++] = j;
		else
			p->reused = 1;
	}
	r = resolve(&c, k.pages, k.which, nw, &memo, &k.s);
	if (r)
		goto out;
	/* Check before arming: a next sample may fall on a page checked now. */
	r = check(&c, &k, n_cur, accessed, &memo);
	if (r)
		goto out;
	r = arm(&c, &k, m, armed, n_armed, keep, out, n_out);
	if (r)
		goto out;
	count_pages(&c, &k, m);
out:
	free_call(&k);
	return r;
}

int da_check_and_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
			 const double *cur, uint32_t n_cur, uint8_t *accessed,
			 const double *next, uint32_t n_next,
			 const struct da_armed *armed, uint32_t n_armed,
			 struct da_armed *armed_out, uint32_t *n_armed_out,
			 struct da_stats *st)
{
	return run(pagemap_fd, kpageflags_fd, bitmap_fd, cur, n_cur, accessed, next, n_next,
		   armed, n_armed, 0, armed_out, n_armed_out, st);
}

int da_prepare(int pagemap_fd, int kpageflags_fd, int bitmap_fd,
	       const double *addrs, uint32_t n,
	       const struct da_armed *armed, uint32_t n_armed,
	       struct da_armed *armed_out, uint32_t *n_armed_out,
	       struct da_stats *st)
{
	return run(pagemap_fd, kpageflags_fd, bitmap_fd, NULL, 0, NULL, addrs, n,
		   armed, n_armed, 1, armed_out, n_armed_out, st);
}

int da_pfn_visible(int self_pagemap_fd, struct da_stats *st)
{
	volatile uint64_t probe = 1;	/* written, so its stack page is present */
	struct ctx c = { .fd = { -1, self_pagemap_fd, -1, -1 }, .st = st };
	uint64_t entry;
	size_t got;
	int r;

	memset(st, 0, sizeof(*st));
	probe++;
	r = read_words(&c, DA_FILE_PAGEMAP, (uint64_t)(uintptr_t)&probe >> page_shift(), &entry, 1,
		       &got);
	if (r)
		return r;
	if (!got || !(entry & PM_PRESENT)) {
		st->nr_not_present = 1;
		return 0;
	}
	return (entry & PM_PFN_MASK) != 0;
}
