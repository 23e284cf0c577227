/* SPDX-License-Identifier: BSD-2-Clause */
/* ui.h — the live web dashboard's files (ui/), embedded in the binary at build time by
 * ui/embed.sh and served at "/" and "/ui/..." of the --http address (README
 * "Dashboard"). The page is a client of the documented /api/ endpoints and the event
 * stream only: nothing here reads the catalog. */
#ifndef REGISTRY_FRONT_HTTP_UI_H
#define REGISTRY_FRONT_HTTP_UI_H

#include <stddef.h>

#include "front/http/internal.h"

/* Headers of every dashboard answer: always revalidate (a strong ETag makes that a 304),
 * and 'self' only: the page loads nothing but its own files (no CDN, no inline script)
 * and talks to nothing but this server. */
#define UI_HEADERS                                                                             \
    "Cache-Control: no-cache\r\n"                                                              \
    "X-Content-Type-Options: nosniff\r\n"                                                      \
    "Referrer-Policy: no-referrer\r\n"                                                         \
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "                      \
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n"

/* One embedded file (generated: build/gen/ui_files.c). */
typedef struct ui_file {
    const char *name;               /* as under /ui/ ("app.js") */
    const char *ctype;              /* its Content-Type */
    const unsigned char *data;
    size_t len;
    const char *etag;               /* strong and quoted: a hash of the bytes */
    const char *headers;            /* "ETag: <etag>\r\n" UI_HEADERS */
} ui_file;
extern const ui_file ui_files[];
extern const size_t ui_files_count;

/* Is path the dashboard's: "/", "/ui", "/ui/" or "/ui/NAME"? */
int ui_path(const char *path);
/* Answers a GET (or HEAD: the server drops the body) of a dashboard path into resp:
 * the file (200) with its ETag, or 304 when if_none_match (the request's If-None-Match,
 * NULL when none) names that ETag, or 404. The body is copied into resp; the headers
 * resp points to are static. */
void ui_serve(const char *path, const char *if_none_match, http_resp *resp);

#endif
