/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The sampling loop of one monitoring context, on a thread of its own: for
 * every sampling interval of an aggregation it picks a random page in each
 * region, arms it and checks it one interval later (da_check_and_prepare), and
 * adds the outcomes to the region's nr_accesses.  JavaScript hands it the
 * regions once per aggregation (region boundaries only change there), starts
 * the run, and polls for the end; merging, splitting and aging stay in
 * JavaScript.
 *
 * Intervals follow absolute deadlines on CLOCK_MONOTONIC, so the time a check
 * takes does not lengthen the window; a check that ends past the next
 * deadline re-anchors the schedule one whole interval later (counted as late)
 * instead of checking an almost empty window.
 */
#ifndef DAMON_SAMPLER_H
#define DAMON_SAMPLER_H

#include <stdint.h>
#include "damon_access.h"

struct da_sampler;

/* Timing of the last run: the caller's drift figures. */
struct da_sampler_timing {
	uint64_t start_ns;	/* CLOCK_MONOTONIC when the first samples were armed */
	uint64_t end_ns;	/* when the last check ended */
	uint64_t busy_ns;	/* time spent checking, sleeps excluded: the cost of the regions */
	uint32_t samples;	/* sampling intervals completed (checks done) */
	uint32_t late;		/* checks that ended past the next deadline */
	uint32_t stopped;	/* 1 if da_sampler_stop ended the run early */
	uint32_t reserved;
};

/*
 * A sampler with its thread started, idle.  seed feeds the address picks
 * (the context's random source, so seeded runs repeat).  NULL on failure
 * (errno set).
 */
struct da_sampler *da_sampler_new(uint64_t seed);

/*
 * Stops any run, joins the thread and frees the sampler.  The file
 * descriptors it was given stay open (they belong to the caller).
 */
void da_sampler_free(struct da_sampler *s);

/* The shared files for the next runs; only while idle.  0 or -EBUSY. */
int da_sampler_set_files(struct da_sampler *s, int kpageflags_fd, int bitmap_fd);

/*
 * Target t (0 <= t < n_targets) of the next runs: its pagemap and its regions
 * as n pairs bounds[2i] = start, bounds[2i + 1] = end (page aligned,
 * start < end).  Setting n_targets drops targets at or past it.  Only while
 * idle.  0, -EBUSY, -EINVAL (bad region: *bad = its index) or -ENOMEM.
 */
int da_sampler_set_target(struct da_sampler *s, uint32_t n_targets, uint32_t t, int pagemap_fd,
			  const double *bounds, uint32_t n, uint32_t *bad);

/*
 * Starts one run of n_samples sampling intervals of sampling_ns each on the
 * sampler's thread and returns at once.  Counts start from zero.  0,
 * -EBUSY (a run is going on) or -EINVAL.
 */
int da_sampler_start(struct da_sampler *s, uint32_t n_samples, uint64_t sampling_ns);

/* 1 once the run started last has ended (or none was started), else 0. */
int da_sampler_done(struct da_sampler *s);

/* Sampling intervals the current (or last) run has completed so far. */
uint32_t da_sampler_progress(struct da_sampler *s);

/* Ends the current run at its next check or sleep; later runs end at once. */
void da_sampler_stop(struct da_sampler *s);

/*
 * Target t's outcome of the last run: nr_accesses of each region (n as set),
 * the access-check counts summed over its calls in *st, and 0, or the -errno
 * of the call that failed (st->err_* say where; its counts up to the failure
 * are kept, and the target was not sampled after it).  -EBUSY while running.
 */
int da_sampler_result(struct da_sampler *s, uint32_t t, uint32_t *nr_accesses,
		      struct da_stats *st);

/* The timing of the last run; -EBUSY while running. */
int da_sampler_timing(struct da_sampler *s, struct da_sampler_timing *out);

/*
 * CPU time the sampler's thread has used since it started (its thread CPU
 * clock, user and system), nanoseconds; -errno on failure.  Any thread may ask.
 */
int64_t da_sampler_cpu_ns(struct da_sampler *s);

/* Sampler threads alive in this process (for leak checks). */
uint32_t da_sampler_threads(void);

#endif /* DAMON_SAMPLER_H */
