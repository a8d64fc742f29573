/*
 * Per-head SALE thresholds in a text file, keyed by layer and query head: what clsa-calibrate
 * writes and clsa-bench --tau-file reads.
 *
 * Format: one line per (layer, query head), three fields separated by blanks:
 *     LAYER HEAD TAU
 * LAYER and HEAD are integers >= 0; TAU is a finite number >= 0 (SALE's tau for that head; a
 * value <= 1e-5 makes the head dense). Blank lines and lines starting with '#' are comments. A
 * (layer, head) pair may appear once. Example:
 *     # clsa tau file
 *     11 0 0.004
 *     11 1 0.016
 */
#ifndef CLSA_BENCH_TAU_FILE_H
#define CLSA_BENCH_TAU_FILE_H

#include <stddef.h>

/* Reads layer `layer`'s thresholds of heads 0 .. heads-1 into tau. Fails (returns -1 with a
   message in err) on a malformed line, a repeated (layer, head), a head of that layer at or past
   `heads`, or a head of that layer the file lacks; writes tau only on success. */
int tau_file_read(const char *path, int layer, int heads, float *tau, char *err, size_t err_size);

/* Writes layer `layer`'s thresholds of heads 0 .. heads-1 into path, keeping every line of the
   other layers (and the comments) of an existing file, which must itself be well formed; the file
   is replaced atomically (a temporary file in the same directory, then rename). Returns 0, or -1
   with a message in err, leaving the file unchanged. */
int tau_file_write_layer(const char *path, int layer, int heads, const float *tau, char *err, size_t err_size);

/* For several calibration texts: when path holds every head of layer `layer` (read as
   tau_file_read reads it), lowers each tau[h] to the file's value if that is smaller and returns 1;
   otherwise leaves tau as it is and returns 0 (no file, no such layer, or a file tau_file_read
   rejects, which tau_file_write_layer then reports). */
int tau_file_keep_smaller(const char *path, int layer, int heads, float *tau);

#endif
