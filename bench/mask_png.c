/* PNG pictures of block masks: see mask_png.h. */
#include "mask_png.h"

#include "glyphs.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct canvas {
    int width, height;
    uint8_t *rgb;
} canvas;

const uint8_t mask_png_palette[5][3] = {
    [CELL_HIDDEN] = {255, 255, 255}, [CELL_SKIPPED] = {222, 222, 222}, [CELL_KEPT] = {31, 119, 180},
    [CELL_LOCAL] = {44, 160, 44},    [CELL_SINK] = {255, 127, 14},
};
static const char *const class_names[5] = {"not visible", "skipped", "kept by the rule", "local / diagonal", "sink"};

static void put(canvas *c, int x, int y, const uint8_t color[3])
{
    if (x >= 0 && y >= 0 && x < c->width && y < c->height)
        memcpy(c->rgb + 3 * ((size_t)y * (size_t)c->width + (size_t)x), color, 3);
}

static void fill(canvas *c, int x0, int y0, int w, int h, const uint8_t color[3])
{
    for (int y = y0; y < y0 + h; ++y)
        for (int x = x0; x < x0 + w; ++x)
            put(c, x, y, color);
}

/* Text at (x, y), its top-left corner; returns the x after it. */
static int text(canvas *c, int x, int y, const char *s)
{
    static const uint8_t ink[3] = {0, 0, 0};
    for (; *s; ++s, x += GLYPH_W + 1) {
        const uint8_t *rows = glyph_rows(*s);
        for (int r = 0; rows && r < GLYPH_H; ++r)
            for (int col = 0; col < GLYPH_W; ++col)
                if (rows[r] & (1u << (GLYPH_W - 1 - col)))
                    put(c, x + col, y + r, ink);
    }
    return x;
}
static int text_width(const char *s) { return (int)strlen(s) * (GLYPH_W + 1); }

/* A tick step of 1, 2 or 5 times a power of ten giving at most `most` ticks over `span` tokens. */
static int64_t tick_step(int64_t span, int most)
{
    for (int64_t p = 1;; p *= 10)
        for (int m = 0; m < 3; ++m) {
            const int64_t step = p * (m == 0 ? 1 : m == 1 ? 2 : 5);
            if (span / step <= most)
                return step;
        }
}

/* Writes the canvas to f as an 8-bit RGB PNG. */
static int save(FILE *f, const canvas *c, char *err, size_t err_size)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    volatile int rc = -1; /* set after setjmp: volatile, so that a longjmp back keeps it */
    if (info && !setjmp(png_jmpbuf(png))) {
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)c->width, (png_uint_32)c->height, 8, PNG_COLOR_TYPE_RGB,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
        for (int y = 0; y < c->height; ++y)
            png_write_row(png, c->rgb + 3 * (size_t)y * (size_t)c->width);
        png_write_end(png, NULL);
        rc = 0;
    }
    if (png)
        png_destroy_write_struct(&png, info ? &info : NULL);
    if (rc == 0 && (fflush(f) != 0 || ferror(f)))
        rc = -1;
    if (rc != 0)
        snprintf(err, err_size, "writing the picture failed%s%s", errno ? ": " : "", errno ? strerror(errno) : "");
    return rc;
}

void mask_png_layout_of(int64_t nqb, int64_t nkb, mask_png_layout *L)
{
    L->blocks_per_px_q = (nqb + MASK_PNG_MAX_SIDE - 1) / MASK_PNG_MAX_SIDE;
    L->blocks_per_px_k = (nkb + MASK_PNG_MAX_SIDE - 1) / MASK_PNG_MAX_SIDE;
    const int64_t longest = nqb > nkb ? nqb : nkb;
    L->zoom = L->blocks_per_px_q == 1 && L->blocks_per_px_k == 1 && longest < 512 ? (int)(512 / longest) : 1;
    L->mask_h = (int)((nqb + L->blocks_per_px_q - 1) / L->blocks_per_px_q) * L->zoom;
    L->mask_w = (int)((nkb + L->blocks_per_px_k - 1) / L->blocks_per_px_k) * L->zoom;
    L->width = MASK_PNG_LEFT + L->mask_w + 20 + 190; /* the legend, 190 pixels wide, 20 to the right */
    L->height = MASK_PNG_TOP + L->mask_h + 40;      /* key tick labels and the axis name below */
    if (L->height < MASK_PNG_TOP + 140)              /* room for the legend */
        L->height = MASK_PNG_TOP + 140;
}

int mask_png_write(FILE *f, const uint8_t *cells, int64_t nqb, int64_t nkb, int block_q, int block_k,
                   int64_t q_len, int64_t kv_len, const char *title, char *err, size_t err_size)
{
    if (nqb <= 0 || nkb <= 0) {
        snprintf(err, err_size, "the mask is empty");
        return -1;
    }
    mask_png_layout L;
    mask_png_layout_of(nqb, nkb, &L);
    const int64_t per_px_q = L.blocks_per_px_q, per_px_k = L.blocks_per_px_k;
    const int zoom = L.zoom, mask_h = L.mask_h, mask_w = L.mask_w, left = MASK_PNG_LEFT, top = MASK_PNG_TOP;
    canvas c = {L.width, L.height, NULL};
    c.rgb = malloc((size_t)c.width * (size_t)c.height * 3);
    if (!c.rgb) {
        snprintf(err, err_size, "no memory for a %d x %d picture", c.width, c.height);
        return -1;
    }
    memset(c.rgb, 255, (size_t)c.width * (size_t)c.height * 3);
    int64_t counts[5] = {0};
    for (int64_t e = 0; e < nqb * nkb; ++e)
        counts[cells[e] <= CELL_SINK ? cells[e] : CELL_HIDDEN]++;
    for (int py = 0; py < mask_h / zoom; ++py)
        for (int px = 0; px < mask_w / zoom; ++px) {
            uint8_t cls = CELL_HIDDEN;
            for (int64_t qb = py * per_px_q; qb < (py + 1) * per_px_q && qb < nqb; ++qb)
                for (int64_t kb = px * per_px_k; kb < (px + 1) * per_px_k && kb < nkb; ++kb)
                    if (cells[qb * nkb + kb] > cls && cells[qb * nkb + kb] <= CELL_SINK)
                        cls = cells[qb * nkb + kb];
            fill(&c, left + px * zoom, top + py * zoom, zoom, zoom, mask_png_palette[cls]);
        }
    /* Frame, title, axes in tokens. */
    static const uint8_t ink[3] = {0, 0, 0};
    fill(&c, left - 1, top - 1, mask_w + 2, 1, ink), fill(&c, left - 1, top + mask_h, mask_w + 2, 1, ink);
    fill(&c, left - 1, top - 1, 1, mask_h + 2, ink), fill(&c, left + mask_w, top - 1, 1, mask_h + 2, ink);
    text(&c, left, 8, title);
    char label[64];
    const double key_px = (double)mask_w / (double)(nkb * block_k), query_px = (double)mask_h / (double)(nqb * block_q);
    const int64_t kstep = tick_step(kv_len, 6), qstep = tick_step(q_len, 8);
    for (int64_t t = 0; t <= kv_len; t += kstep) {
        const int x = left + (int)((double)t * key_px);
        fill(&c, x, top + mask_h, 1, 4, ink);
        snprintf(label, sizeof label, "%lld", (long long)t);
        text(&c, x - text_width(label) / 2, top + mask_h + 7, label);
    }
    text(&c, left + mask_w / 2 - text_width("key tokens") / 2, top + mask_h + 22, "key tokens");
    for (int64_t t = 0; t <= q_len; t += qstep) {
        const int y = top + (int)((double)t * query_px);
        fill(&c, left - 4, y, 4, 1, ink);
        snprintf(label, sizeof label, "%lld", (long long)t);
        text(&c, left - 6 - text_width(label), y - GLYPH_H / 2, label);
    }
    text(&c, 2, top - 22, "query tokens");
    /* Legend: each class with its share of the visible blocks. */
    const int64_t visible = nqb * nkb - counts[CELL_HIDDEN];
    int y = top;
    for (int cls = CELL_SINK; cls >= CELL_HIDDEN; --cls, y += 18) {
        const int x = left + mask_w + 20;
        fill(&c, x, y, 12, 12, mask_png_palette[cls]);
        fill(&c, x, y, 12, 1, ink), fill(&c, x, y + 11, 12, 1, ink), fill(&c, x, y, 1, 12, ink), fill(&c, x + 11, y, 1, 12, ink);
        if (cls == CELL_HIDDEN)
            snprintf(label, sizeof label, "%s", class_names[cls]);
        else
            snprintf(label, sizeof label, "%s %.1f%%", class_names[cls],
                     visible ? 100.0 * (double)counts[cls] / (double)visible : 0.0);
        text(&c, x + 16, y + 3, label);
    }
    snprintf(label, sizeof label, "blocks %d x %d", block_q, block_k);
    text(&c, left + mask_w + 20, y + 6, label);
    if (per_px_q > 1 || per_px_k > 1) {
        snprintf(label, sizeof label, "pixel = %lld x %lld blocks", (long long)per_px_q, (long long)per_px_k);
        text(&c, left + mask_w + 20, y + 20, label);
        text(&c, left + mask_w + 20, y + 32, "(top class shown)");
    }
    errno = 0;
    const int rc = save(f, &c, err, err_size);
    free(c.rgb);
    return rc;
}
