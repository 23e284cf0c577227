/* SPDX-License-Identifier: BSD-2-Clause */
/* regress_dir.h — opening a fuzzer's regression folder from a unit test: relative to the
 * working directory (tests/run.py runs unit tests from the top of the tree), else
 * relative to the test binary (build/tests/..). Shared by test_proto.c and
 * test_dnsmsg.c; header-only, as each test binary is one file. */
#ifndef TESTS_UNIT_REGRESS_DIR_H
#define TESTS_UNIT_REGRESS_DIR_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Opens rel (e.g. "tests/fuzz/regress") into *out and writes its path to path[len].
 * Returns 0 or -1. */
static int open_regress_dir(const char *rel, char *path, size_t len, DIR **out) {
    *out = opendir(rel);
    if (*out != NULL) {
        snprintf(path, len, "%s", rel);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    int w = snprintf(path, len, "%s/../../%s", exe, rel);
    if (w < 0 || (size_t)w >= len)
        return -1;
    *out = opendir(path);
    return *out ? 0 : -1;
}

#endif
