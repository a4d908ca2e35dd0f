// SPDX-License-Identifier: GPL-2.0
/*
 * The sampling loop on a thread of its own (see damon_sampler.h).  Each
 * interval makes one da_check_and_prepare call per target, the same checks
 * the per-sample path makes from JavaScript: THP heads, frames that changed
 * since arming (fork and COW), PFN and LRU checks are all theirs.
 */
#define _GNU_SOURCE
#include "damon_sampler.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct target {
	int pagemap_fd;
	uint32_t n;		/* regions */
	uint32_t cap;
	double *bounds;		/* 2n: start, end */
	double *cur;		/* n: the samples armed in the previous interval */
	double *next;		/* n: the samples armed in this one */
	uint8_t *accessed;	/* n */
	uint32_t *counts;	/* n: nr_accesses of this run */
	struct da_armed *armed;	/* what the last call armed (n_armed entries) */
	struct da_armed *armed_out;
	uint32_t n_armed;
	uint32_t armed_cap;
	struct da_stats sum;
	struct da_stats call;
	int err;		/* 0, or the -errno that ended this target's run */
};

enum state { IDLE, RUNNING, QUIT };

struct da_sampler {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* CLOCK_MONOTONIC: sleeps to absolute deadlines */
	enum state state;
	int stop;
	int kpageflags_fd;
	int bitmap_fd;
	uint32_t n_targets;
	uint32_t targets_cap;
	struct target *targets;
	uint32_t n_samples;
	uint64_t sampling_ns;
	uint64_t rng;
	struct da_sampler_timing timing;
};

static uint32_t live_threads;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, fast, and good enough to place samples. */
static uint64_t next_random(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A random page of every region, by its first byte, as DAMON's vaddr picks them. */
static void pick(struct da_sampler *s, struct target *t)
{
	uint64_t page = (uint64_t)da_page_size();
	uint32_t i;

	for (i = 0; i < t->n; i++) {
		uint64_t start = (uint64_t)t->bounds[2 * i], end = (uint64_t)t->bounds[2 * i + 1];
		uint64_t pages = (end - start) / page;
		uint64_t k = (uint64_t)(((unsigned __int128)next_random(&s->rng) * pages) >> 64);

		t->next[i] = (double)(start + k * page);
	}
}

static void add_stats(struct da_stats *sum, const struct da_stats *c)
{
	int i;

	sum->nr_checked += c->nr_checked;
	sum->nr_armed += c->nr_armed;
	sum->nr_not_present += c->nr_not_present;
	sum->nr_pfn_zero += c->nr_pfn_zero;
	sum->nr_untracked += c->nr_untracked;
	sum->nr_huge_tail += c->nr_huge_tail;
	sum->nr_short += c->nr_short;
	sum->nr_reused += c->nr_reused;
	sum->nr_reverified += c->nr_reverified;
	for (i = 0; i < DA_NR_IO; i++)
		sum->nr_io[i] += c->nr_io[i];
}

/* Records a failed call: the target is not sampled again in this run. */
static void target_failed(struct target *t, int r)
{
	t->err = r;
	t->sum.err_errno = t->call.err_errno;
	t->sum.err_file = t->call.err_file;
	t->sum.err_op = t->call.err_op;
	t->sum.err_offset = t->call.err_offset;
}

static void swap_armed(struct target *t, uint32_t n_out)
{
	struct da_armed *a = t->armed;

	t->armed = t->armed_out;
	t->armed_out = a;
	t->n_armed = n_out;
}

/* Arms the first samples of a run: the armed list carries over, for its frames. */
static void arm_first(struct da_sampler *s, struct target *t)
{
	uint32_t n_out = 0;
	int r;

	pick(s, t);
	r = da_prepare(t->pagemap_fd, s->kpageflags_fd, s->bitmap_fd, t->next, t->n, t->armed,
		       t->n_armed, t->armed_out, &n_out, &t->call);
	add_stats(&t->sum, &t->call);
	if (r) {
		target_failed(t, r);
		return;
	}
	swap_armed(t, n_out);
}

/* Checks the samples armed one interval ago and, unless last, arms the next ones. */
static void check(struct da_sampler *s, struct target *t, int last)
{
	uint32_t n_out = 0, i;
	double *tmp;
	int r;

	tmp = t->cur;
	t->cur = t->next;
	t->next = tmp;
	if (!last)
		pick(s, t);
	r = da_check_and_prepare(t->pagemap_fd, s->kpageflags_fd, s->bitmap_fd, t->cur, t->n,
				 t->accessed, t->next, last ? 0 : t->n, t->armed, t->n_armed,
				 t->armed_out, &n_out, &t->call);
	add_stats(&t->sum, &t->call);
	if (r) {
		target_failed(t, r);
		return;
	}
	for (i = 0; i < t->n; i++)
		t->counts[i] += t->accessed[i];
	/*
	 * After the last check nothing stays armed; keep the old list, whose
	 * frames the first arming of the next run may still reuse.
	 */
	if (!last)
		swap_armed(t, n_out);
}

/* Sleeps until deadline (CLOCK_MONOTONIC) or a stop; returns 1 if stopped. */
static int sleep_until(struct da_sampler *s, uint64_t deadline)
{
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ULL),
			       .tv_nsec = (long)(deadline % 1000000000ULL) };
	int stop;

	pthread_mutex_lock(&s->lock);
	while (!s->stop && now_ns() < deadline)
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

static void run(struct da_sampler *s)
{
	uint64_t deadline, woke, end;
	uint32_t i, k;

	pthread_mutex_lock(&s->lock);
	memset(&s->timing, 0, sizeof(s->timing));
	pthread_mutex_unlock(&s->lock);
	for (k = 0; k < s->n_targets; k++) {
		struct target *t = &s->targets[k];

		memset(&t->sum, 0, sizeof(t->sum));
		memset(t->counts, 0, t->n * sizeof(*t->counts));
		t->err = 0;
	}
	s->timing.start_ns = now_ns();
	for (k = 0; k < s->n_targets; k++)
		arm_first(s, &s->targets[k]);
	/* The window starts once the samples are armed, as after the kernel's prepare. */
	deadline = now_ns() + s->sampling_ns;
	s->timing.end_ns = s->timing.start_ns;
	for (i = 0; i < s->n_samples; i++) {
		int last = i + 1 == s->n_samples;

		if (sleep_until(s, deadline)) {
			s->timing.stopped = 1;
			break;
		}
		woke = now_ns();
		for (k = 0; k < s->n_targets; k++)
			if (!s->targets[k].err)
				check(s, &s->targets[k], last);
		end = now_ns();
		s->timing.busy_ns += end - woke;
		__atomic_store_n(&s->timing.samples, s->timing.samples + 1, __ATOMIC_RELEASE);
		s->timing.end_ns = end;
		deadline += s->sampling_ns;
		if (end > deadline) {
			/* A whole interval late: the next window starts now, full length. */
			s->timing.late++;
			deadline = end + s->sampling_ns;
		}
	}
}

static void *thread_main(void *arg)
{
	struct da_sampler *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (s->state == IDLE)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->state == QUIT)
			break;
		pthread_mutex_unlock(&s->lock);
		run(s);
		pthread_mutex_lock(&s->lock);
		if (s->state == RUNNING)
			s->state = IDLE;
	}
	pthread_mutex_unlock(&s->lock);
	__atomic_sub_fetch(&live_threads, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

struct da_sampler *da_sampler_new(uint64_t seed)
{
	struct da_sampler *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	int r;

	if (!s)
		return NULL;
	s->rng = seed;
	s->kpageflags_fd = -1;
	s->bitmap_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	__atomic_add_fetch(&live_threads, 1, __ATOMIC_SEQ_CST);
	r = pthread_create(&s->thread, NULL, thread_main, s);
	if (r) {
		__atomic_sub_fetch(&live_threads, 1, __ATOMIC_SEQ_CST);
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		free(s);
		errno = r;
		return NULL;
	}
	return s;
}

static void free_target(struct target *t)
{
	free(t->bounds);
	free(t->cur);
	free(t->next);
	free(t->accessed);
	free(t->counts);
	free(t->armed);
	free(t->armed_out);
}

void da_sampler_free(struct da_sampler *s)
{
	uint32_t k;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = 1;
	s->state = QUIT;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	for (k = 0; k < s->targets_cap; k++)
		free_target(&s->targets[k]);
	free(s->targets);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* True while a run is going on; the caller must not touch the targets then. */
static int busy(struct da_sampler *s)
{
	int b;

	pthread_mutex_lock(&s->lock);
	b = s->state != IDLE;
	pthread_mutex_unlock(&s->lock);
	return b;
}

int da_sampler_set_files(struct da_sampler *s, int kpageflags_fd, int bitmap_fd)
{
	if (busy(s))
		return -EBUSY;
	s->kpageflags_fd = kpageflags_fd;
	s->bitmap_fd = bitmap_fd;
	return 0;
}

static int grow(void **p, size_t n, size_t size)
{
	void *q = realloc(*p, (n ? n : 1) * size);

	if (!q)
		return -ENOMEM;
	*p = q;
	return 0;
}

int da_sampler_set_target(struct da_sampler *s, uint32_t n_targets, uint32_t ti, int pagemap_fd,
			  const double *bounds, uint32_t n, uint32_t *bad)
{
	uint64_t page = (uint64_t)da_page_size();
	struct target *t;
	uint32_t i;

	*bad = 0;
	if (busy(s))
		return -EBUSY;
	if (ti >= n_targets)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		double a = bounds[2 * i], b = bounds[2 * i + 1];

		/* NaN fails the comparisons; 2^64 is the end of the address space. */
		if (!(a >= 0 && a < b && b <= 18446744073709551616.0) ||
		    (uint64_t)a % page || (b < 18446744073709551616.0 && (uint64_t)b % page)) {
			*bad = i;
			return -EINVAL;
		}
	}
	if (n_targets > s->targets_cap) {
		struct target *nt = realloc(s->targets, n_targets * sizeof(*nt));

		if (!nt)
			return -ENOMEM;
		memset(nt + s->targets_cap, 0, (n_targets - s->targets_cap) * sizeof(*nt));
		s->targets = nt;
		s->targets_cap = n_targets;
	}
	s->n_targets = n_targets;
	t = &s->targets[ti];
	if (t->pagemap_fd != pagemap_fd)
		t->n_armed = 0;	/* another process: nothing armed carries over */
	t->pagemap_fd = pagemap_fd;
	if (n > t->cap) {
		if (grow((void **)&t->bounds, 2 * (size_t)n, sizeof(double)) ||
		    grow((void **)&t->cur, n, sizeof(double)) ||
		    grow((void **)&t->next, n, sizeof(double)) ||
		    grow((void **)&t->accessed, n, 1) ||
		    grow((void **)&t->counts, n, sizeof(uint32_t)))
			return -ENOMEM;
		t->cap = n;
	}
	/* Arming may keep every earlier entry and add n. */
	if ((size_t)t->n_armed + n > t->armed_cap) {
		uint32_t cap = t->n_armed + n;

		if (grow((void **)&t->armed, cap, sizeof(struct da_armed)) ||
		    grow((void **)&t->armed_out, cap, sizeof(struct da_armed)))
			return -ENOMEM;
		t->armed_cap = cap;
	}
	memcpy(t->bounds, bounds, 2 * (size_t)n * sizeof(double));
	t->n = n;
	memset(t->counts, 0, (t->n ? t->n : 1) * sizeof(uint32_t));
	return 0;
}

int da_sampler_start(struct da_sampler *s, uint32_t n_samples, uint64_t sampling_ns)
{
	uint32_t k;

	if (n_samples == 0 || sampling_ns == 0)
		return -EINVAL;
	for (k = 0; k < s->n_targets; k++)
		if (s->targets[k].armed_cap < s->targets[k].n_armed + s->targets[k].n)
			return -EINVAL;	/* a target was never set */
	pthread_mutex_lock(&s->lock);
	if (s->state != IDLE) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	s->n_samples = n_samples;
	s->sampling_ns = sampling_ns;
	s->state = RUNNING;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int da_sampler_done(struct da_sampler *s)
{
	return !busy(s);
}

uint32_t da_sampler_progress(struct da_sampler *s)
{
	return __atomic_load_n(&s->timing.samples, __ATOMIC_ACQUIRE);
}

void da_sampler_stop(struct da_sampler *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int da_sampler_result(struct da_sampler *s, uint32_t ti, uint32_t *nr_accesses, struct da_stats *st)
{
	struct target *t;

	if (busy(s))
		return -EBUSY;
	if (ti >= s->n_targets)
		return -EINVAL;
	t = &s->targets[ti];
	memcpy(nr_accesses, t->counts, (size_t)t->n * sizeof(uint32_t));
	*st = t->sum;
	return t->err;
}

int da_sampler_timing(struct da_sampler *s, struct da_sampler_timing *out)
{
	if (busy(s))
		return -EBUSY;
	*out = s->timing;
	return 0;
}

int64_t da_sampler_cpu_ns(struct da_sampler *s)
{
	struct timespec ts;
	clockid_t cid;
	int r = pthread_getcpuclockid(s->thread, &cid);

	if (r)
		return -r;
	if (clock_gettime(cid, &ts))
		return -errno;
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

uint32_t da_sampler_threads(void)
{
	return __atomic_load_n(&live_threads, __ATOMIC_SEQ_CST);
}
