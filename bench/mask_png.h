/* Pictures of block masks as PNG files (libpng), for clsa-run --mask-png. */
#ifndef CLSA_BENCH_MASK_PNG_H
#define CLSA_BENCH_MASK_PNG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* What a (query block, key block) cell of the picture shows, in increasing priority. */
typedef enum mask_cell {
    CELL_HIDDEN = 0,  /* no row of the query block sees a key of the block (causal) */
    CELL_SKIPPED = 1, /* visible, not kept */
    CELL_KEPT = 2,    /* kept by the method's own rule */
    CELL_LOCAL = 3,   /* kept, and holds a local or diagonal key of one of the block's rows */
    CELL_SINK = 4,    /* kept, and holds one of the first sink_tokens keys */
} mask_cell;

/* The largest side of the mask area in pixels: larger masks are downsampled. */
#define MASK_PNG_MAX_SIDE 1024
/* Where the mask area starts in the picture (its top-left pixel). */
#define MASK_PNG_LEFT 60
#define MASK_PNG_TOP 44

/* The colour of each mask_cell (RGB). */
extern const uint8_t mask_png_palette[5][3];

/* How a mask of num_q_blocks x num_k_blocks is drawn: block (qb, kb) falls in the pixel square of
   side zoom at x = MASK_PNG_LEFT + (kb / blocks_per_px_k) * zoom, y = MASK_PNG_TOP + (qb /
   blocks_per_px_q) * zoom; the mask area is mask_w x mask_h, the picture width x height. */
typedef struct mask_png_layout {
    int64_t blocks_per_px_q, blocks_per_px_k;
    int zoom, mask_w, mask_h, width, height;
} mask_png_layout;
void mask_png_layout_of(int64_t num_q_blocks, int64_t num_k_blocks, mask_png_layout *out);

/*
 * Writes cells[num_q_blocks][num_k_blocks] (mask_cell values) as a PNG at path: query tokens down,
 * key tokens across, axes labelled in tokens, a title line and a legend with each class's share
 * of the visible blocks. Downsampling: a mask wider or taller than MASK_PNG_MAX_SIDE blocks is
 * shown with ceil(blocks / MASK_PNG_MAX_SIDE) blocks per pixel along that axis, and each pixel
 * takes the highest-priority class among its blocks (sink > local > kept > skipped > hidden), so
 * that no kept block disappears; a small mask is magnified to about 512 pixels. Writes the PNG to
 * f (the caller makes the file appear atomically: clsa-run writes a temporary file and renames
 * it). Returns 0, or -1 with a message in err.
 */
int mask_png_write(FILE *f, const uint8_t *cells, int64_t num_q_blocks, int64_t num_k_blocks, int block_q,
                   int block_k, int64_t q_len, int64_t kv_len, const char *title, char *err, size_t err_size);

#endif
