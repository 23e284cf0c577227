/* SPDX-License-Identifier: BSD-2-Clause */
/* owners.c — see owners.h. */
#include "core/owners.h"

#include <stdlib.h>
#include <string.h>

#include "base/dict.h"

/* The same on every node (a fixed key): rendezvous hashing must agree cluster-wide. */
static const unsigned char owner_key[16] = "registry-owners";

int owners_mine(const core *c, const char *id) {
    if (!c->shared || c->nmembers <= 1)
        return 1;
    char buf[128 + STORE_ID_MAX + 2];
    size_t idlen = strlen(id);
    uint64_t best = 0;
    const char *winner = NULL;
    for (size_t i = 0; i < c->nmembers; i++) {
        size_t nlen = strlen(c->members[i]);
        if (nlen > 128)
            nlen = 128;
        memcpy(buf, c->members[i], nlen);
        buf[nlen] = '\n';
        memcpy(buf + nlen + 1, id, idlen);
        uint64_t h = dict_siphash24_with_key(owner_key, buf, nlen + 1 + idlen);
        if (winner == NULL || h > best) {
            best = h;
            winner = c->members[i];
        }
    }
    return winner != NULL && strcmp(winner, c->cfg.node_name) == 0;
}

int owners_set(core *c, const char *const *names, size_t n) {
    char **m = calloc(n ? n : 1, sizeof(*m));
    if (m == NULL)
        return -1; /* keep the old list */
    for (size_t i = 0; i < n; i++)
        if ((m[i] = strdup(names[i])) == NULL) {
            while (i-- > 0)
                free(m[i]);
            free(m);
            return -1;
        }
    int same = n == c->nmembers;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(m[i], c->members[i]) == 0;
    owners_free(c);
    c->members = m;
    c->nmembers = n;
    return same ? 0 : 1;
}

void owners_free(core *c) {
    for (size_t i = 0; i < c->nmembers; i++)
        free(c->members[i]);
    free(c->members);
    c->members = NULL;
    c->nmembers = 0;
}
