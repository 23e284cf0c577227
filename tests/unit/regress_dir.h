/* SPDX-License-Identifier: BSD-2-Clause */
/* regress_dir.h — replaying a fuzzer's regression inputs in a unit test. The folder is
 * found relative to the working directory (tests/run.py runs unit tests from the top of
 * the tree), else relative to the test binary (build/tests/..). Shared by the unit tests
 * of each fuzzed decoder; header-only, as each test binary is one file. Include it after
 * cmocka.h. */
#ifndef TESTS_UNIT_REGRESS_DIR_H
#define TESTS_UNIT_REGRESS_DIR_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Replays every input in rel: fn(name, data, n, ud) gets a file's first max bytes (n of
 * them) and returns NULL, or why the input fails (printed). Dot files, README and
 * folders are skipped. Every file is tried; then the test fails when rel cannot be
 * opened, holds no input while need_one is set, or any input failed (the failures are
 * listed together). */
static void regress_replay(const char *rel, size_t max, int need_one,
                           const char *(*fn)(const char *name, const unsigned char *data,
                                             size_t n, void *ud),
                           void *ud) {
    char dir[PATH_MAX];
    DIR *d;
    if (open_regress_dir(rel, dir, sizeof dir, &d) != 0)
        fail_msg("cannot open %s (run from the top of the tree)", rel);
    unsigned char *data = malloc(max ? max : 1);
    assert_non_null(data);
    struct dirent *e;
    int files = 0, failed = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README") == 0 || e->d_type == DT_DIR)
            continue;
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t n = fread(data, 1, max, f);
        fclose(f);
        files++;
        const char *why = fn(e->d_name, data, n, ud);
        if (why != NULL) {
            print_error("%s: %s\n", e->d_name, why);
            failed++;
        }
    }
    closedir(d);
    free(data);
    print_message("replayed %d fuzzer regression input(s) from %s\n", files, dir);
    if (files == 0 && need_one)
        fail_msg("no regression input in %s", dir);
    if (failed > 0)
        fail_msg("%d of %d regression input(s) fail", failed, files);
}

#endif
