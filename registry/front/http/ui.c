/* SPDX-License-Identifier: BSD-2-Clause */
/* ui.c — serves the dashboard's embedded files (ui.h). "/" and "/ui/" are index.html;
 * other names are looked up among the few embedded files (a linear scan: there are
 * three or four). Every answer says no-cache with a strong ETag, so a browser always
 * revalidates (a 304 when nothing changed) and a new build is never hidden behind a
 * stale copy. */
#include "front/http/ui.h"

#include <string.h>

int ui_path(const char *path) {
    return strcmp(path, "/") == 0 || strcmp(path, "/ui") == 0 || strncmp(path, "/ui/", 4) == 0;
}

static const ui_file *find(const char *name) {
    for (size_t i = 0; i < ui_files_count; i++)
        if (strcmp(ui_files[i].name, name) == 0)
            return &ui_files[i];
    return NULL;
}

/* Does an If-None-Match list ("\"a\", W/\"b\"" or "*") name etag? The weak comparison
 * RFC 9110 asks of If-None-Match. */
static int etag_listed(const char *list, const char *etag) {
    size_t n = strlen(etag);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, n) == 0 &&
            (p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
            return 1;
        while (*p && *p != ',')
            p++;
    }
    return 0;
}

void ui_serve(const char *path, const char *if_none_match, http_resp *resp) {
    int index = strcmp(path, "/") == 0 || strcmp(path, "/ui") == 0 || strcmp(path, "/ui/") == 0;
    const char *name = index ? "index.html" : path + 4;
    const ui_file *f = strchr(name, '/') ? NULL : find(name);
    if (f == NULL) {
        api_error(resp, 404, "no such dashboard file: %.200s (the dashboard is at /)", path);
        return;
    }
    resp->ctype = f->ctype;
    resp->extra = f->headers;
    if (if_none_match != NULL && etag_listed(if_none_match, f->etag)) {
        resp->status = 304;
        return;
    }
    if (ubuf_add(&resp->body, f->data, f->len) != 0) {
        resp->ctype = NULL;
        resp->extra = NULL;
        api_error(resp, 500, "out of memory");
        return;
    }
    resp->status = 200;
}
