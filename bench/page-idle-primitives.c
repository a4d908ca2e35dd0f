// SPDX-License-Identifier: GPL-2.0
/*
 * The cost of the page_idle access check's primitives, one page at a time, for
 * bench/guest-cpu.ts (runs INSIDE the guest: it writes the real idle bitmap).
 * Maps MIB MiB of anonymous memory (4 KiB pages or transparent huge pages),
 * touches every page, then times over N random pages of it:
 *   - a null system call (pread of 8 bytes of /dev/zero), the floor of any call;
 *   - a pagemap read of one entry (virtual page -> PFN: a page table walk);
 *   - a bitmap write marking the page idle (a reverse-mapping walk of its folio);
 *   - a bitmap read of the page's 64-frame word (a reverse-mapping walk of every
 *     idle folio in the word), with those N pages marked idle: as many as a monitor
 *     with N regions arms at once.
 * Prints one JSON object with microseconds per call (wall and thread CPU).
 *
 * Usage: page-idle-primitives MIB 4k|thp N
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define PFN_MASK ((1ULL << 55) - 1)
#define PRESENT (1ULL << 63)

static uint64_t ns(clockid_t c)
{
	struct timespec t;

	clock_gettime(c, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

struct timing {
	uint64_t wall, cpu;
};

static void start(struct timing *t)
{
	t->wall = ns(CLOCK_MONOTONIC);
	t->cpu = ns(CLOCK_THREAD_CPUTIME_ID);
}

static void print(const char *name, const struct timing *t, unsigned long n, int last)
{
	printf("\"%s\":{\"wallUs\":%.3f,\"cpuUs\":%.3f}%s", name, (ns(CLOCK_MONOTONIC) - t->wall) / 1e3 / n,
	       (ns(CLOCK_THREAD_CPUTIME_ID) - t->cpu) / 1e3 / n, last ? "" : ",");
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[2], "4k") && strcmp(argv[2], "thp"))) {
		fprintf(stderr, "usage: page-idle-primitives MIB 4k|thp N\n");
		return 2;
	}
	size_t len = strtoul(argv[1], NULL, 10) << 20;
	unsigned long n = strtoul(argv[3], NULL, 10), i;
	int thp = strcmp(argv[2], "thp") == 0;
	char *raw = mmap(NULL, len + (2UL << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (raw == MAP_FAILED)
		die("mmap");
	char *m = (char *)(((uintptr_t)raw + (2UL << 20) - 1) & ~((2UL << 20) - 1));
	if (madvise(m, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		die("madvise");
	for (size_t off = 0; off < len; off += PAGE)
		m[off] = 1;
	int pagemap = open("/proc/self/pagemap", O_RDONLY);
	int bitmap = open("/sys/kernel/mm/page_idle/bitmap", O_RDWR);
	int zero = open("/dev/zero", O_RDONLY);
	if (pagemap < 0 || bitmap < 0 || zero < 0)
		die("open");
	uint64_t *pfn = calloc(n, sizeof(*pfn)), word, x = 88172645463325252ULL;
	size_t *off = calloc(n, sizeof(*off));
	if (!pfn || !off)
		die("calloc");
	for (i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		off[i] = (x % (len / PAGE)) * PAGE;
	}
	struct timing t;

	printf("{\"pages\":%lu,\"kind\":\"%s\",", n, argv[2]);
	start(&t);
	for (i = 0; i < n; i++)
		if (pread(zero, &word, 8, 0) != 8)
			die("pread /dev/zero");
	print("nullCall", &t, n, 0);
	start(&t);
	for (i = 0; i < n; i++) {
		uint64_t e;

		if (pread(pagemap, &e, 8, (off_t)((uintptr_t)(m + off[i]) / PAGE * 8)) != 8)
			die("pread pagemap");
		if (!(e & PRESENT) || !(e & PFN_MASK)) {
			fprintf(stderr, "page %lu not present or PFN hidden (not root?)\n", i);
			return 1;
		}
		/* A THP's idle flag is its head's: the head frame is 512-aligned. */
		pfn[i] = thp ? (e & PFN_MASK) & ~511ULL : (e & PFN_MASK);
	}
	print("pagemapRead", &t, n, 0);
	start(&t);
	for (i = 0; i < n; i++) {
		word = 1ULL << (pfn[i] % 64);
		if (pwrite(bitmap, &word, 8, (off_t)(pfn[i] / 64 * 8)) != 8)
			die("pwrite bitmap");
	}
	print("bitmapWrite", &t, n, 0);
	start(&t);
	for (i = 0; i < n; i++)
		if (pread(bitmap, &word, 8, (off_t)(pfn[i] / 64 * 8)) != 8)
			die("pread bitmap");
	print("bitmapRead", &t, n, 1);
	printf("}\n");
	return 0;
}
