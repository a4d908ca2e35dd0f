// A process with a known memory access pattern, for tests that check what a monitor saw.
//
// It maps SIZE bytes of anonymous memory, writes every page once (so every page has a
// real frame, not the shared zero page), then keeps the hot ranges of the current phase
// accessed by touching one byte of every page of them in a loop. Phases move the hot set
// over time. It prints its layout and every change as JSON lines on stdout, so a test
// knows the truth to compare against: addresses are absolute virtual addresses (numbers;
// user addresses stay below 2^53), times are CLOCK_MONOTONIC ("monoMs", comparable with
// /proc/uptime and the kernel's trace timestamps) and CLOCK_REALTIME ("realMs").
//
// Usage: workload --size SIZE [--hot RANGES | --phase MS:RANGES ...] [--repeat]
//                 [--duration SEC] [--thp hugepage|nohugepage|default] [--align SIZE]
//                 [--access read|write] [--pause-us N] [--tlb-flush-ms N] [--report-ms N]
//   SIZE     bytes with an optional K, M or G suffix (binary units), page aligned
//   RANGES   comma-separated OFFSET+LENGTH[@P] inside the mapping (sizes as above), or
//            '-' for none; e.g. 0+16M,64M+4M@0.3. A range without @P is touched on every
//            pass. With @P (0 < P <= 1) time is cut into windows of 5 ms (DAMON's default
//            sampling interval) on CLOCK_MONOTONIC, and at the first pass of each window
//            each page of the range is touched once with probability P (its own draw):
//            a monitor whose sampling interval is 5 ms finds a page accessed in about P of
//            its intervals, as every interval holds exactly one window start; over a
//            window of k intervals (a monitor running late) it is 1 - (1 - P)^k. This
//            holds while a pass takes less than 5 ms (a slower pass skips windows; the
//            exit event's passes say how fast they went) and while the TLB is flushed
//            more often than every 5 ms (--tlb-flush-ms), so that a touch after the
//            monitor cleared the Accessed bit sets it again.
//   --hot    one phase that lasts until --duration ends or a SIGINT/SIGTERM arrives
//   --phase  a phase of MS milliseconds; phases run in order, then the program exits,
//            or starts over with --repeat. SIGUSR1 ends the current phase at once (MS is
//            then an upper bound): a test whose monitors run slower than expected moves
//            the hot set once each has seen enough of the phase, not after a fixed time.
//   --thp    madvise(MADV_HUGEPAGE / MADV_NOHUGEPAGE) on the mapping before touching it
//   --align  align the mapping's start to SIZE (e.g. 2M so huge pages can back all of it)
//   --access how hot pages are touched: read (sets the Accessed bit only) or write
//            (also sets the dirty and soft-dirty bits); default read
//   --pause-us  sleep this long after each pass over the hot set (default 0: busy)
//   --tlb-flush-ms  force a full TLB flush of the process this often (default 5; 0: never).
//            Clearing an Accessed bit does not flush the TLB: the CPU sets the bit again
//            only when a TLB miss makes it walk the page table. A hot set that fits in the
//            TLB (a few huge pages in a busy loop, or anything under QEMU's large software
//            TLB) would otherwise never look accessed again to page_idle or DAMON. The
//            flush changes the protection of a 128-page scratch mapping: more pages than
//            the kernel's single-page flush ceiling (33), so it flushes the whole TLB.
//   --report-ms  print a "rate" event this often: the passes over the hot set since the
//            last one and the exact time they took, so a test sees the hot loop's
//            throughput over time (e.g. while a monitor reclaims the cold part); default 0
// Events: mapped, ready (all pages touched), phase, rate, exit. Exit status 0, or 2 on bad
// arguments, 1 on a system call failure; every error names what failed.
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAX_PHASES 64
#define MAX_RANGES 256
#define SCRATCH_PAGES 128

struct range {
	uint64_t offset, length;
	double probability;     // 1: touched on every pass; else per page per window (see RANGES)
	uint64_t window;        // the last window it was touched in, plus one (0: none yet)
};

// The window of the per-page draws of a range with @P: DAMON's default sampling interval.
#define PROBABILITY_WINDOW_MS 5.0

struct phase {
	uint64_t duration_ms; // 0: until --duration or a signal (only for --hot)
	int nr_ranges;
	struct range ranges[MAX_RANGES];
};

static struct phase phases[MAX_PHASES];
static int nr_phases;
static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t next_phase;
static uint64_t page_size;
static uint64_t random_state = 0x9e3779b97f4a7c15ull;

// xorshift64*: a uniform double in [0, 1) for the per-page draws of ranges with @P.
static double next_random(void)
{
	random_state ^= random_state >> 12;
	random_state ^= random_state << 25;
	random_state ^= random_state >> 27;
	return (double)((random_state * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static void on_signal(int sig) { stop_signal = sig; }
static void on_next_phase(int sig) { (void)sig; next_phase = 1; }

static void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "workload: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: workload --size SIZE [--hot RANGES | --phase MS:RANGES ...] [--repeat] "
			"[--duration SEC] [--thp hugepage|nohugepage|default] [--align SIZE] "
			"[--access read|write] [--pause-us N] [--tlb-flush-ms N] [--report-ms N]\n");
	exit(2);
}

static void sys_error(const char *what)
{
	fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double ms_of(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Prints both clocks; mono, when not negative, is the monotonic time already taken for the
// event, so the printed time is exactly the one the program acts on.
static void print_times_at(double mono)
{
	double real = ms_of(CLOCK_REALTIME);
	printf("\"monoMs\":%.3f,\"realMs\":%.3f", mono < 0 ? ms_of(CLOCK_MONOTONIC) : mono, real);
}

static void print_times(void) { print_times_at(-1); }

// Parses "123", "0x1000", "16M": returns 0 and sets *out, or -1 when not a size.
static int parse_size(const char *s, const char *end, uint64_t *out)
{
	char buf[64];
	size_t n = end - s;
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	char *rest;
	errno = 0;
	unsigned long long v = strtoull(buf, &rest, 0);
	if (errno || rest == buf || buf[0] == '-')
		return -1;
	unsigned shift = 0;
	switch (*rest) {
	case '\0': break;
	case 'k': case 'K': shift = 10; rest++; break;
	case 'm': case 'M': shift = 20; rest++; break;
	case 'g': case 'G': shift = 30; rest++; break;
	default: return -1;
	}
	if (*rest != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static uint64_t parse_size_arg(const char *opt, const char *arg)
{
	uint64_t v;
	if (parse_size(arg, arg + strlen(arg), &v) < 0)
		usage_error("bad %s '%s': expected a whole number with an optional K, M or G suffix", opt, arg);
	return v;
}

static void parse_ranges(const char *arg, struct phase *ph)
{
	ph->nr_ranges = 0;
	if (strcmp(arg, "-") == 0)
		return;
	const char *p = arg;
	for (;;) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *plus = memchr(p, '+', end - p);
		const char *at = plus ? memchr(plus, '@', end - plus) : NULL;
		struct range r = { .probability = 1.0, .window = 0 };
		if (!plus || parse_size(p, plus, &r.offset) < 0 || parse_size(plus + 1, at ? at : end, &r.length) < 0)
			usage_error("bad hot range list '%s': expected OFFSET+LENGTH[@P][,OFFSET+LENGTH[@P]...] or '-'", arg);
		if (at) {
			char buf[32];
			size_t n = end - (at + 1);
			char *rest;
			if (n == 0 || n >= sizeof(buf))
				usage_error("bad probability in hot range list '%s': expected @P with 0 < P <= 1", arg);
			memcpy(buf, at + 1, n);
			buf[n] = '\0';
			errno = 0;
			r.probability = strtod(buf, &rest);
			if (errno || *rest != '\0' || !(r.probability > 0 && r.probability <= 1))
				usage_error("bad probability '%s' in hot range list '%s': expected 0 < P <= 1", buf, arg);
		}
		if (r.length == 0)
			usage_error("hot range list '%s' has an empty range", arg);
		if (ph->nr_ranges == MAX_RANGES)
			usage_error("hot range list '%s' has more than %d ranges", arg, MAX_RANGES);
		ph->ranges[ph->nr_ranges++] = r;
		if (!comma)
			break;
		p = comma + 1;
	}
}

static void add_phase(const char *arg, int timed)
{
	if (nr_phases == MAX_PHASES)
		usage_error("more than 64 phases (at '%s')", arg);
	struct phase *ph = &phases[nr_phases++];
	const char *ranges = arg;
	ph->duration_ms = 0;
	if (timed) {
		const char *colon = strchr(arg, ':');
		if (!colon || parse_size(arg, colon, &ph->duration_ms) < 0 || ph->duration_ms == 0)
			usage_error("bad --phase '%s': expected MS:RANGES with MS > 0", arg);
		ranges = colon + 1;
	}
	parse_ranges(ranges, ph);
}

static void print_hot(const char *base, const struct phase *ph)
{
	printf("[");
	for (int i = 0; i < ph->nr_ranges; i++)
		printf("%s{\"start\":%" PRIu64 ",\"end\":%" PRIu64 ",\"probability\":%g}", i ? "," : "",
		       (uint64_t)(uintptr_t)base + ph->ranges[i].offset,
		       (uint64_t)(uintptr_t)base + ph->ranges[i].offset + ph->ranges[i].length, ph->ranges[i].probability);
	printf("]");
}

// Bytes of the mapping at start backed by transparent huge pages (smaps AnonHugePages).
static long long anon_huge_bytes(uintptr_t start)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[512];
	int in_mapping = 0;
	long long kib = -1;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t s, e;
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &s, &e) == 2) {
			in_mapping = (s == start);
			continue;
		}
		if (in_mapping && sscanf(line, "AnonHugePages: %lld kB", &kib) == 1)
			break;
	}
	fclose(f);
	return kib < 0 ? -1 : kib * 1024;
}

int main(int argc, char **argv)
{
	uint64_t size = 0, align = 0, duration_s = 0, pause_us = 0, tlb_flush_ms = 5, report_ms = 0;
	int repeat = 0, have_hot = 0, write_access = 0;
	const char *thp = "default";

	page_size = (uint64_t)sysconf(_SC_PAGESIZE);
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		if (strcmp(opt, "--repeat") == 0) {
			repeat = 1;
			continue;
		}
		if (i + 1 >= argc)
			usage_error("option '%s' needs a value (or is unknown)", opt);
		const char *arg = argv[++i];
		if (strcmp(opt, "--size") == 0)
			size = parse_size_arg("--size", arg);
		else if (strcmp(opt, "--align") == 0)
			align = parse_size_arg("--align", arg);
		else if (strcmp(opt, "--duration") == 0)
			duration_s = parse_size_arg("--duration", arg);
		else if (strcmp(opt, "--pause-us") == 0)
			pause_us = parse_size_arg("--pause-us", arg);
		else if (strcmp(opt, "--tlb-flush-ms") == 0)
			tlb_flush_ms = parse_size_arg("--tlb-flush-ms", arg);
		else if (strcmp(opt, "--report-ms") == 0)
			report_ms = parse_size_arg("--report-ms", arg);
		else if (strcmp(opt, "--hot") == 0) {
			if (have_hot)
				usage_error("--hot given twice (at '%s'); use --phase for a hot set that moves", arg);
			have_hot = 1;
			add_phase(arg, 0);
		} else if (strcmp(opt, "--phase") == 0)
			add_phase(arg, 1);
		else if (strcmp(opt, "--thp") == 0) {
			if (strcmp(arg, "hugepage") && strcmp(arg, "nohugepage") && strcmp(arg, "default"))
				usage_error("bad --thp '%s': expected hugepage, nohugepage or default", arg);
			thp = arg;
		} else if (strcmp(opt, "--access") == 0) {
			if (strcmp(arg, "read") && strcmp(arg, "write"))
				usage_error("bad --access '%s': expected read or write", arg);
			write_access = strcmp(arg, "write") == 0;
		} else
			usage_error("unknown option '%s'", opt);
	}
	if (size == 0)
		usage_error("--size is required and must be more than 0");
	if (size % page_size)
		usage_error("--size %" PRIu64 " is not a multiple of the page size %" PRIu64, size, page_size);
	if (align && (align & (align - 1) || align % page_size))
		usage_error("--align %" PRIu64 " is not a power of two multiple of the page size", align);
	if (have_hot && nr_phases > 1)
		usage_error("--hot and --phase cannot be combined");
	if (repeat && have_hot)
		usage_error("--repeat applies to --phase only");
	for (int p = 0; p < nr_phases; p++)
		for (int r = 0; r < phases[p].nr_ranges; r++) {
			const struct range *rg = &phases[p].ranges[r];
			if (rg->offset % page_size || rg->length % page_size)
				usage_error("hot range %" PRIu64 "+%" PRIu64 " (phase %d) is not page aligned",
					    rg->offset, rg->length, p);
			if (rg->offset > size || rg->length > size - rg->offset)
				usage_error("hot range %" PRIu64 "+%" PRIu64 " (phase %d) ends past --size %" PRIu64,
					    rg->offset, rg->length, p, size);
		}

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct sigaction sa_next = { .sa_handler = on_next_phase };
	sigaction(SIGUSR1, &sa_next, NULL);

	// Over-map by the alignment, then unmap the unaligned head and the tail.
	uint64_t map_len = size + align;
	char *raw = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		sys_error("mmap");
	char *base = raw;
	if (align) {
		base = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
		if (base > raw && munmap(raw, base - raw))
			sys_error("munmap of the alignment head");
		if (raw + map_len > base + size && munmap(base + size, raw + map_len - (base + size)))
			sys_error("munmap of the alignment tail");
	}
	if (strcmp(thp, "hugepage") == 0 && madvise(base, size, MADV_HUGEPAGE))
		sys_error("madvise(MADV_HUGEPAGE)");
	if (strcmp(thp, "nohugepage") == 0 && madvise(base, size, MADV_NOHUGEPAGE))
		sys_error("madvise(MADV_NOHUGEPAGE)");

	char *scratch = NULL;
	if (tlb_flush_ms) {
		scratch = mmap(NULL, SCRATCH_PAGES * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (scratch == MAP_FAILED)
			sys_error("mmap of the TLB flush scratch mapping");
		if (madvise(scratch, SCRATCH_PAGES * page_size, MADV_NOHUGEPAGE))
			sys_error("madvise(MADV_NOHUGEPAGE) of the TLB flush scratch mapping");
		for (uint64_t i = 0; i < SCRATCH_PAGES; i++)
			scratch[i * page_size] = 1;
	}

	printf("{\"event\":\"mapped\",\"pid\":%d,\"start\":%" PRIu64 ",\"end\":%" PRIu64 ",\"size\":%" PRIu64
	       ",\"pageSize\":%" PRIu64 ",\"thp\":\"%s\",\"tlbFlushMs\":%" PRIu64 ",\"scratch\":", (int)getpid(),
	       (uint64_t)(uintptr_t)base, (uint64_t)(uintptr_t)base + size, size, page_size, thp, tlb_flush_ms);
	if (scratch)
		printf("{\"start\":%" PRIu64 ",\"end\":%" PRIu64 "},", (uint64_t)(uintptr_t)scratch,
		       (uint64_t)(uintptr_t)scratch + SCRATCH_PAGES * page_size);
	else
		printf("null,");
	print_times();
	printf("}\n");
	fflush(stdout);

	double t0 = ms_of(CLOCK_MONOTONIC);
	for (uint64_t off = 0; off < size; off += page_size)
		((volatile char *)base)[off] = 1;
	printf("{\"event\":\"ready\",\"touchMs\":%.3f,\"anonHugeBytes\":%lld,", ms_of(CLOCK_MONOTONIC) - t0,
	       anon_huge_bytes((uintptr_t)base));
	print_times();
	printf("}\n");
	fflush(stdout);

	double start_ms = ms_of(CLOCK_MONOTONIC);
	double last_flush = start_ms;
	double end_ms = duration_s ? start_ms + duration_s * 1e3 : 0;
	const char *reason = NULL; // why the run ended: phases-done, duration or signal
	uint64_t passes = 0;
	double last_report = start_ms;
	uint64_t passes_at_report = 0;
	volatile char sink = 0;
	struct timespec pause = { .tv_sec = pause_us / 1000000, .tv_nsec = (pause_us % 1000000) * 1000 };
	for (int p = 0; nr_phases > 0 && !reason; p = (p + 1) % nr_phases) {
		struct phase *ph = &phases[p];
		double phase_start = ms_of(CLOCK_MONOTONIC);
		next_phase = 0;
		printf("{\"event\":\"phase\",\"index\":%d,\"durationMs\":%" PRIu64 ",\"access\":\"%s\",\"hot\":", p,
		       ph->duration_ms, write_access ? "write" : "read");
		print_hot(base, ph);
		printf(",");
		print_times_at(phase_start);
		printf("}\n");
		fflush(stdout);
		for (;;) {
			if (stop_signal) {
				reason = "signal";
				break;
			}
			double now = ms_of(CLOCK_MONOTONIC);
			if (end_ms && now >= end_ms) {
				reason = "duration";
				break;
			}
			if (ph->duration_ms && (next_phase || now - phase_start >= (double)ph->duration_ms))
				break;
			uint64_t window = (uint64_t)(now / PROBABILITY_WINDOW_MS) + 1;
			for (int r = 0; r < ph->nr_ranges; r++) {
				struct range *rg = &ph->ranges[r];
				int sparse = rg->probability < 1.0;
				if (sparse && rg->window == window)
					continue;
				rg->window = window;
				volatile char *s = (volatile char *)base + rg->offset;
				for (uint64_t off = 0; off < rg->length; off += page_size) {
					if (sparse && next_random() >= rg->probability)
						continue;
					if (write_access)
						s[off]++;
					else
						sink += s[off];
				}
			}
			passes++;
			if (report_ms && now - last_report >= (double)report_ms) {
				printf("{\"event\":\"rate\",\"passes\":%" PRIu64 ",\"ms\":%.3f,", passes - passes_at_report,
				       now - last_report);
				print_times_at(now);
				printf("}\n");
				fflush(stdout);
				last_report = now;
				passes_at_report = passes;
			}
			if (tlb_flush_ms && now - last_flush >= (double)tlb_flush_ms) {
				if (mprotect(scratch, SCRATCH_PAGES * page_size, PROT_READ) ||
				    mprotect(scratch, SCRATCH_PAGES * page_size, PROT_READ | PROT_WRITE))
					sys_error("mprotect of the TLB flush scratch mapping");
				last_flush = now;
			}
			if (pause_us)
				nanosleep(&pause, NULL);
		}
		if (!reason && p == nr_phases - 1 && !repeat)
			reason = "phases-done";
	}
	// With no hot range at all, wait for the end without touching anything.
	if (nr_phases == 0) {
		struct timespec idle = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };
		while (!stop_signal && (!end_ms || ms_of(CLOCK_MONOTONIC) < end_ms))
			nanosleep(&idle, NULL);
		reason = stop_signal ? "signal" : "duration";
	}
	printf("{\"event\":\"exit\",\"reason\":\"%s\",\"passes\":%" PRIu64 ",", reason, passes);
	print_times();
	printf("}\n");
	fflush(stdout);
	(void)sink;
	return 0;
}
