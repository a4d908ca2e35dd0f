// SPDX-License-Identifier: GPL-2.0
/*
 * Opening beneath a held directory, never through a link (see beneath.h).
 */
#define _GNU_SOURCE
#include "beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's ABI (include/uapi/linux/openat2.h), spelled here so that
 * building needs no recent kernel headers. */
struct beneath_open_how {
	uint64_t flags;
	uint64_t mode;
	uint64_t resolve;
};
#define BENEATH_RESOLVE_NO_MAGICLINKS	0x02
#define BENEATH_RESOLVE_NO_SYMLINKS	0x04
#define BENEATH_RESOLVE_BENEATH		0x08
#ifndef SYS_openat2
#define SYS_openat2 437		/* the same number on every architecture */
#endif

static int use_openat2 = 1;

int da_beneath_use_openat2(int32_t set)
{
	if (set == 0 || set == 1)
		__atomic_store_n(&use_openat2, set, __ATOMIC_RELAXED);
	return __atomic_load_n(&use_openat2, __ATOMIC_RELAXED);
}

/* openat2 beneath dir_fd, or -ENOSYS (remembered) where the kernel lacks it. */
static int open_beneath(int dir_fd, const char *path, int flags, mode_t mode)
{
	struct beneath_open_how how = {
		.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = BENEATH_RESOLVE_BENEATH | BENEATH_RESOLVE_NO_SYMLINKS |
			   BENEATH_RESOLVE_NO_MAGICLINKS,
	};
	int fd;

	if (!__atomic_load_n(&use_openat2, __ATOMIC_RELAXED))
		return -ENOSYS;
	fd = (int)syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
	if (fd >= 0)
		return fd;
	if (errno == ENOSYS)
		__atomic_store_n(&use_openat2, 0, __ATOMIC_RELAXED);
	return -errno;
}

/* One component of dir_fd, never through a link: openat2, else openat. */
static int open_component(int dir_fd, const char *name, int flags, mode_t mode)
{
	int fd = open_beneath(dir_fd, name, flags, mode);
	struct stat st;

	if (fd == -ENOSYS) {
		fd = openat(dir_fd, name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd < 0)
			fd = -errno;
	}
	/* O_DIRECTORY | O_NOFOLLOW answers ENOTDIR for a link as its last
	 * component: say it is a link, as for any other. */
	if (fd == -ENOTDIR && (flags & O_DIRECTORY) &&
	    fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		return -ELOOP;
	return fd;
}

static int is_component(const char *name)
{
	return name[0] != '\0' && strchr(name, '/') == NULL &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

int da_beneath_open_dir(int root_fd, const char *path, uint32_t create_mode,
			uint32_t max_depth, int32_t *bad_component)
{
	const int dflags = O_RDONLY | O_DIRECTORY;
	uint32_t depth = 1;
	char *copy, *name, *save = NULL;
	int32_t i = 0;
	int cur, fd;

	*bad_component = -1;
	if (path[0] == '\0') {
		fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	for (const char *p = path; *p; p++)
		depth += *p == '/';
	if (depth > max_depth)
		return -ENAMETOOLONG;

	/* The usual case: the directory exists, one system call resolves it. */
	fd = open_beneath(root_fd, path, dflags, 0);
	if (fd >= 0)
		return fd;

	/* Walk: to create what is missing, and to name the component that fails. */
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	cur = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
	if (cur < 0) {
		free(copy);
		return -errno;
	}
	for (name = strtok_r(copy, "/", &save); name; name = strtok_r(NULL, "/", &save), i++) {
		if (!is_component(name)) {
			fd = -EINVAL;
		} else {
			fd = open_component(cur, name, dflags, 0);
			if (fd == -ENOENT && create_mode != 0) {
				if (mkdirat(cur, name, (mode_t)create_mode) < 0 && errno != EEXIST)
					fd = -errno;
				else	/* ours, or one that raced in: either way checked by this open */
					fd = open_component(cur, name, dflags, 0);
			}
		}
		close(cur);
		if (fd < 0) {
			*bad_component = i;
			free(copy);
			return fd;
		}
		cur = fd;
	}
	free(copy);
	return cur;
}

int da_beneath_open_file(int dir_fd, const char *name, int32_t flags, uint32_t mode)
{
	int fd, fl;

	if (!is_component(name))
		return -EINVAL;
	fd = open_component(dir_fd, name, flags | O_NONBLOCK, (mode_t)mode);
	if (fd < 0)
		return fd;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int da_beneath_rename(int dir_fd, const char *from, const char *to)
{
	if (!is_component(from) || !is_component(to))
		return -EINVAL;
	return renameat(dir_fd, from, dir_fd, to) < 0 ? -errno : 0;
}

int da_beneath_unlink(int dir_fd, const char *name)
{
	if (!is_component(name))
		return -EINVAL;
	return unlinkat(dir_fd, name, 0) < 0 ? -errno : 0;
}
