/* The block selectors in float64: see select_reference.h. */
#include "select_reference.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "reference.h"

/* How far float64 and the device's f32 may drift apart. */
#define PROB_EPS 1e-4
#define MASS_EPS 1e-4

typedef struct row_geometry {
    int64_t row_first, row_last, diag_first, diag_last, last_visible, visible_blocks;
    int64_t forced_first, forced_last, sink_end;
} row_geometry;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static row_geometry geometry(const clsa_shape *s, const clsa_sparsity *p, int64_t qb)
{
    row_geometry g;
    g.row_first = qb * p->block_q;
    g.row_last = min64(g.row_first + p->block_q, s->q_len) - 1;
    g.diag_first = g.row_first + s->kv_len - s->q_len;
    g.diag_last = g.row_last + s->kv_len - s->q_len;
    g.last_visible = s->causal ? min64(g.diag_last, s->kv_len - 1) : s->kv_len - 1;
    g.visible_blocks = g.last_visible < 0 ? 0 : g.last_visible / p->block_k + 1;
    const int64_t local = p->local_tokens;
    const int64_t first = s->causal ? g.diag_first - local + 1 : g.diag_first - local / 2;
    const int64_t last = s->causal ? g.diag_last : g.diag_last + local - local / 2 - 1;
    g.forced_first = max64(min64(first, g.diag_first), 0);
    g.forced_last = min64(max64(last, g.diag_last), g.last_visible);
    g.sink_end = min64(p->sink_tokens, s->kv_len);
    return g;
}

static bool forced(const clsa_shape *s, const clsa_sparsity *p, const row_geometry *g, int64_t kb)
{
    const bool on = p->method == CLSA_METHOD_STREAMING || p->keep_forced;
    const int64_t k0 = kb * p->block_k, k1 = min64(k0 + p->block_k, s->kv_len) - 1;
    return on && (k0 < g->sink_end || (k1 >= g->forced_first && k0 <= g->forced_last));
}

static double load_q(const clsa_shape *s, const void *q, int64_t b, int64_t h, int64_t i, int64_t c)
{
    const ref_strides st = ref_resolve(s->q_strides, s->q_heads, s->q_len, s->head_dim);
    return ref_load(q, s->dtype, b * st.batch + h * st.head + i * st.token + c);
}
static double load_k(const clsa_shape *s, const void *k, int64_t b, int64_t h, int64_t j, int64_t c)
{
    const ref_strides st = ref_resolve(s->k_strides, s->kv_heads, s->kv_len, s->head_dim);
    return ref_load(k, s->dtype, b * st.batch + (h / (s->q_heads / s->kv_heads)) * st.head + j * st.token + c);
}
static double scale_of(const clsa_shape *s) { return s->scale > 0 ? s->scale : 1.0 / sqrt((double)s->head_dim); }

static int by_value_desc(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The cut of a row's scores w[0..n) (non-negative): blocks above `sure` are certainly kept, blocks
   below `possible` certainly not. TOPK: the need-th largest; mass: the crossing block of
   `fraction` of the total, allowing the mass its tolerance. */
static void cuts(const double *w, int64_t n, bool topk, double fraction, double *sure, double *possible)
{
    double *sorted = malloc(sizeof(double) * (size_t)n), total = 0.0;
    memcpy(sorted, w, sizeof(double) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(double), by_value_desc);
    for (int64_t i = 0; i < n; ++i)
        total += sorted[i];
    int64_t lo, hi;
    if (topk) {
        /* ceil(topk * n) in f32, as the device computes it. */
        int64_t need = (int64_t)ceilf((float)fraction * (float)n);
        need = need < 1 ? 1 : need > n ? n : need;
        lo = hi = need - 1;
    } else {
        lo = hi = n - 1;
        double cum = 0.0;
        bool found_lo = false;
        for (int64_t i = 0; i < n; ++i) {
            cum += sorted[i];
            if (!found_lo && cum >= (fraction - MASS_EPS) * total)
                lo = i, found_lo = true;
            if (cum >= (fraction + MASS_EPS) * total) {
                hi = i;
                break;
            }
        }
    }
    *sure = sorted[lo] * (1.0 + PROB_EPS);
    *possible = sorted[hi] * (1.0 - PROB_EPS);
    /* A cut value with no other score near it ranks the same in f32: then it is kept for sure. */
    int64_t near = 0;
    for (int64_t i = 0; i < n; ++i)
        near += fabs(sorted[i] - sorted[lo]) <= 2.0 * PROB_EPS * sorted[lo];
    if (lo == hi && near == 1)
        *sure = *possible;
    free(sorted);
}

/* TOPK and CDF's block probabilities of one row; false when a score is not finite. */
static bool pooled_scores(const clsa_shape *s, const clsa_sparsity *p, const void *q, const void *k, int64_t b,
                          int64_t h, const row_geometry *g, double *w)
{
    const int64_t d = s->head_dim, n = g->visible_blocks;
    double *mean_q = calloc((size_t)d, sizeof(double)), *mean_k = calloc((size_t)d, sizeof(double));
    for (int64_t i = g->row_first; i <= g->row_last; ++i)
        for (int64_t c = 0; c < d; ++c)
            mean_q[c] += load_q(s, q, b, h, i, c) / (double)(g->row_last - g->row_first + 1);
    double m = -INFINITY;
    bool finite = true;
    for (int64_t kb = 0; kb < n; ++kb) {
        const int64_t first = kb * p->block_k, end = min64(first + p->block_k, s->kv_len);
        memset(mean_k, 0, sizeof(double) * (size_t)d);
        for (int64_t j = first; j < end; ++j)
            for (int64_t c = 0; c < d; ++c)
                mean_k[c] += load_k(s, k, b, h, j, c) / (double)(end - first);
        double dot = 0.0;
        for (int64_t c = 0; c < d; ++c)
            dot += mean_q[c] * mean_k[c];
        w[kb] = dot * scale_of(s);
        finite = finite && isfinite(w[kb]);
        m = fmax(m, w[kb]);
    }
    double l = 0.0;
    for (int64_t kb = 0; finite && kb < n; ++kb)
        l += (w[kb] = exp(w[kb] - m));
    for (int64_t kb = 0; finite && kb < n; ++kb)
        w[kb] /= l;
    free(mean_q), free(mean_k);
    return finite;
}

/* XATTN's block scores of one row; false when a score is not finite or no group has a term. */
static bool antidiagonal_scores(const clsa_shape *s, const clsa_sparsity *p, const void *q, const void *k, int64_t b,
                                int64_t h, int64_t qb, const row_geometry *g, double *w)
{
    const int64_t S = p->xattn_stride, groups = p->block_q / S, n = g->visible_blocks;
    const int64_t key_groups = g->last_visible < 0 ? 0 : g->last_visible / S + 1;
    double *x = malloc(sizeof(double) * (size_t)(key_groups ? key_groups : 1));
    bool *has = malloc((size_t)(key_groups ? key_groups : 1));
    int64_t scored = 0;
    bool finite = true;
    for (int64_t kb = 0; kb < n; ++kb)
        w[kb] = 0.0;
    for (int64_t a = 0; a < groups && finite; ++a) {
        const int64_t row0 = qb * p->block_q + a * S;
        double m = -INFINITY;
        bool any_group = false;
        for (int64_t bg = 0; bg < key_groups; ++bg) {
            x[bg] = 0.0;
            has[bg] = false;
            for (int64_t t = 0; t < S; ++t) {
                const int64_t i = row0 + S - 1 - t, j = bg * S + t;
                if (i >= s->q_len || j > ref_last_visible(s, i))
                    continue;
                double dot = 0.0;
                for (int64_t c = 0; c < s->head_dim; ++c)
                    dot += load_q(s, q, b, h, i, c) * load_k(s, k, b, h, j, c);
                x[bg] += dot;
                has[bg] = true;
            }
            if (has[bg]) {
                x[bg] *= scale_of(s) / (double)S;
                finite = finite && isfinite(x[bg]);
                m = fmax(m, x[bg]);
                any_group = true;
            }
        }
        if (!any_group || !finite)
            continue;
        double l = 0.0;
        for (int64_t bg = 0; bg < key_groups; ++bg)
            if (has[bg])
                l += exp(x[bg] - m);
        for (int64_t bg = 0; bg < key_groups; ++bg)
            if (has[bg])
                w[bg * S / p->block_k] += exp(x[bg] - m) / l;
        ++scored;
    }
    for (int64_t kb = 0; kb < n && scored; ++kb)
        w[kb] /= (double)scored;
    free(x), free(has);
    return finite && scored > 0;
}

int64_t ref_select_head(const clsa_shape *s, const clsa_sparsity *p, int64_t h, const void *q, const void *k,
                        uint8_t *must, uint8_t *may)
{
    const int64_t nqb = (s->q_len + p->block_q - 1) / p->block_q, nkb = (s->kv_len + p->block_k - 1) / p->block_k;
    double *w = malloc(sizeof(double) * (size_t)nkb);
    int64_t ambiguous = 0;
    for (int64_t b = 0; b < s->batch; ++b)
        for (int64_t qb = 0; qb < nqb; ++qb) {
            const row_geometry g = geometry(s, p, qb);
            const int64_t row = (b * s->q_heads + h) * nqb + qb;
            uint8_t *must_row = must + row * nkb, *may_row = may + row * nkb;
            memset(must_row, 0, (size_t)nkb);
            memset(may_row, 0, (size_t)nkb);
            bool all = p->method == CLSA_METHOD_DENSE, scored = false;
            double sure = INFINITY, possible = INFINITY;
            if (g.visible_blocks > 0 && (p->method == CLSA_METHOD_TOPK || p->method == CLSA_METHOD_CDF)) {
                all = !pooled_scores(s, p, q, k, b, h, &g, w);
                scored = !all;
                if (scored)
                    cuts(w, g.visible_blocks, p->method == CLSA_METHOD_TOPK,
                         p->method == CLSA_METHOD_TOPK ? p->topk : p->cdf_gamma, &sure, &possible);
            } else if (g.visible_blocks > 0 && p->method == CLSA_METHOD_XATTN) {
                all = !antidiagonal_scores(s, p, q, k, b, h, qb, &g, w);
                scored = !all;
                if (scored)
                    cuts(w, g.visible_blocks, false, p->xattn_threshold, &sure, &possible);
            }
            const int64_t window = p->window_tokens;
            const int64_t first = p->window_symmetric ? g.diag_first - window : g.diag_first - window + 1;
            const int64_t last = min64(p->window_symmetric ? g.diag_last + window : g.diag_last, g.last_visible);
            for (int64_t kb = 0; kb < g.visible_blocks; ++kb) {
                const int64_t k0 = kb * p->block_k, k1 = k0 + p->block_k - 1;
                bool keep = all || forced(s, p, &g, kb);
                if (p->method == CLSA_METHOD_SLIDING)
                    keep = keep || (k0 <= last && k1 >= first);
                must_row[kb] = keep || (scored && w[kb] > sure);
                may_row[kb] = keep || (scored && w[kb] >= possible);
                ambiguous += must_row[kb] != may_row[kb];
            }
        }
    free(w);
    return ambiguous;
}
