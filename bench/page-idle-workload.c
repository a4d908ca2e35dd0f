// SPDX-License-Identifier: GPL-2.0
/*
 * Workload for bench/page-idle.ts: maps MIB MiB of anonymous memory aligned to
 * 2 MiB, backed by transparent huge pages ("thp") or by 4 KiB pages only ("4k"),
 * touches every page, prints "ready START END" (hex) and waits until its stdin
 * closes, touching nothing meanwhile.
 *
 * Usage: page-idle-workload MIB thp|4k
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE (2UL << 20)

int main(int argc, char **argv)
{
	unsigned long mib = argc == 3 ? strtoul(argv[1], NULL, 10) : 0;
	int thp = argc == 3 && !strcmp(argv[2], "thp");
	size_t size = mib << 20;
	char *raw, *p, c;

	if (!mib || (!thp && (argc != 3 || strcmp(argv[2], "4k")))) {
		fprintf(stderr, "usage: %s MIB thp|4k\n", argv[0]);
		return 2;
	}
	raw = mmap(NULL, size + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	p = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
	/* Best effort: THP may be off on the host; the benchmark reports what it got. */
	madvise(p, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(p, 1, size);
	printf("ready %lx %lx\n", (unsigned long)(uintptr_t)p, (unsigned long)(uintptr_t)(p + size));
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
