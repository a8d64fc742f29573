/* A 5 x 7 bitmap font for the labels of clsa-run's mask pictures (bench/mask_png.c): digits, lower-
   case letters and a little punctuation. Each glyph is 7 rows, top first; bit 4 is the leftmost
   column. Hand-drawn: the labels need a few dozen characters, which no Debian library provides
   without a font stack. */
#ifndef CLSA_BENCH_GLYPHS_H
#define CLSA_BENCH_GLYPHS_H

#include <stdint.h>

#define GLYPH_W 5
#define GLYPH_H 7

/* The rows of character c, or NULL for a character the font lacks (drawn as a space). */
const uint8_t *glyph_rows(char c);

#endif
