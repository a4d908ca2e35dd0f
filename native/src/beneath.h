/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Opening files beneath a held directory descriptor, never through a symbolic
 * link, for the agent's result files: the agent runs as root and writes at
 * paths remote users choose, inside a data directory that local users may be
 * able to change while it works.  Every step is relative to a descriptor this
 * library opened and checked, so renaming or swapping entries of the tree
 * after a check cannot redirect a later step.
 *
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) does
 * the resolving where the kernel has it (5.6+); on ENOSYS every call falls
 * back to one openat(O_NOFOLLOW | O_DIRECTORY) per component, which holds the
 * same guarantee for paths without '..' (the callers give none).
 *
 * Every call returns a descriptor or 0, or -errno.  ELOOP means a symbolic
 * link was met (the fallback reports it too), EXDEV a path leaving the
 * starting directory.
 */
#ifndef DAMON_BENEATH_H
#define DAMON_BENEATH_H

#include <stdint.h>

/*
 * Opens the directory at path (components separated by single '/', none
 * empty, '.' or '..'; "" is root_fd itself) beneath root_fd.  With a non-zero
 * create_mode, missing directories are created with it (mkdirat), one
 * component at a time, each opened again beneath its parent.  Paths of more
 * than max_depth components are refused (-ENAMETOOLONG) before anything is
 * created.  On failure *bad_component is the index of the component that
 * failed (-1 when none does).
 */
int da_beneath_open_dir(int root_fd, const char *path, uint32_t create_mode,
			uint32_t max_depth, int32_t *bad_component);

/*
 * Opens the file `name` (one component) of dir_fd with flags (access mode,
 * O_CREAT, O_EXCL, O_APPEND; O_NOFOLLOW and O_CLOEXEC are always added).
 * A FIFO or device planted there does not block the open (O_NONBLOCK, then
 * cleared); the caller refuses what is not a regular file.
 */
int da_beneath_open_file(int dir_fd, const char *name, int32_t flags, uint32_t mode);

/* renameat(dir_fd, from, dir_fd, to): replaces `to` atomically, never following it. */
int da_beneath_rename(int dir_fd, const char *from, const char *to);

/* unlinkat(dir_fd, name, 0). */
int da_beneath_unlink(int dir_fd, const char *name);

/*
 * Whether openat2 is used (1) or the per-component fallback (0).  A call with
 * 0 or 1 sets it (tests run the fallback on kernels that have openat2); -1
 * only reads it.  It turns 0 by itself when the kernel answers ENOSYS.
 */
int da_beneath_use_openat2(int32_t set);

#endif /* DAMON_BENEATH_H */
