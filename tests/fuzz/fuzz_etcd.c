/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_etcd.c — libFuzzer target for the etcd backend's codec (registry/store/
 * etcd_json.c): what comes from etcd is data a node did not write itself (another
 * node's values, the watch stream), so it is held to the same bar as the wire.
 *
 * The input's first byte picks how the rest arrives at the watch stream's framer: in
 * one piece or in reads of 1..k bytes. Each framed object must be the same either way;
 * each is also given to the instance and event parsers, and its bytes to the base64
 * decoder. Beyond "no crash, no leak, no undefined behaviour":
 *   - the framer's objects are the same however the input is cut;
 *   - an object begins with '{' and ends with '}';
 *   - a parsed instance's id fits STORE_ID_MAX and its strings are C strings.
 *
 * Build and run: make -f tests/fuzz/fuzz.mk build-fuzz/fuzz_etcd (tests/fuzz/fuzz.mk).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/etcd_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct seen {
    char *all;
    size_t len;
} seen;

static int object(void *ud, const char *p, size_t n) {
    seen *s = ud;
    if (n < 2 || p[0] != '{' || p[n - 1] != '}')
        abort();
    s->all = realloc(s->all, s->len + n + 1);
    memcpy(s->all + s->len, p, n);
    s->len += n;
    s->all[s->len++] = '\n';
    store_instance si;
    json_t *keep = NULL;
    if (etcd_inst_parse(p, n, &si, &keep) == 0 &&
        (strlen(si.id) > STORE_ID_MAX || strlen(si.service) > n || strlen(si.host) > n))
        abort();
    json_decref(keep);
    store_event ev;
    keep = NULL;
    (void)etcd_event_parse(p, n, &ev, &keep);
    json_decref(keep);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = data[0] % 16 + 1;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    etcd_frame whole = {0}, cut = {0};
    seen a = {0}, b = {0};
    etcd_frame_feed(&whole, p, n, object, &a);
    for (size_t off = 0; off < n; off += step)
        etcd_frame_feed(&cut, p + off, n - off < step ? n - off : step, object, &b);
    if (a.len != b.len || (a.len && memcmp(a.all, b.all, a.len) != 0))
        abort();
    free(a.all);
    free(b.all);
    etcd_frame_free(&whole);
    etcd_frame_free(&cut);
    /* the bytes as base64 (a C string up to the first NUL) */
    char *s = strndup(p, n);
    size_t len;
    free(etcd_unb64(s, &len));
    free(s);
    return 0;
}
