/* SPDX-License-Identifier: BSD-2-Clause */
/* hist.c — fixed-bound histograms (hist.h). */
#include "base/hist.h"

const double hist_seconds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                               0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   2.5, 10.0};
const size_t hist_seconds_n = sizeof(hist_seconds) / sizeof(hist_seconds[0]);
const double hist_sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384};
const size_t hist_sizes_n = sizeof(hist_sizes) / sizeof(hist_sizes[0]);

void hist_init(hist *h, const double *bounds, size_t nb) {
    *h = (hist){0};
    h->bounds = bounds;
    h->nb = nb > HIST_MAX_BUCKETS ? HIST_MAX_BUCKETS : nb;
}

void hist_add(hist *h, double v) {
    size_t i = 0;
    while (i < h->nb && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->n++;
    h->sum += v;
}

json_t *hist_json(const hist *h) {
    json_t *le = json_array(), *counts = json_array();
    uint64_t cum = 0;
    for (size_t i = 0; le && counts && i <= h->nb; i++) {
        cum += h->counts[i];
        if (i < h->nb)
            json_array_append_new(le, json_real(h->bounds[i]));
        json_array_append_new(counts, json_integer((json_int_t)cum));
    }
    return json_pack("{s:o, s:o, s:f, s:I}", "le", le, "counts", counts, "sum", h->sum, "count",
                     (json_int_t)h->n);
}
