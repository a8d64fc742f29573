/* Strict reader of .npy files (NumPy format 1.0/2.0): little-endian float32 or float16, C order;
   and a writer of float32 ones, for handing arrays to other programs (bench/torch_anchor.c). */
#ifndef CLSA_BENCH_NPY_H
#define CLSA_BENCH_NPY_H

#include <stddef.h>
#include <stdint.h>

typedef struct npy_array {
    int ndim;
    int64_t shape[8];
    int is_f16;     /* 1: '<f2', 0: '<f4' */
    void *data;     /* raw little-endian elements */
    int64_t count;
} npy_array;

/* Reads path; on failure returns -1 and writes a message into err (never crashes on bad input).
   The header's shape is checked against the file's size before anything is allocated for it. */
int npy_read(const char *path, npy_array *out, char *err, size_t err_size);

/* Headers longer than this are refused (NumPy writes a few hundred bytes). */
#define NPY_MAX_HEADER (1u << 20)
/* Parses the preamble and header at the start of a file of file_size bytes (head holds its first
   head_len bytes): fills out's dtype, shape and count (not data) and *data_offset, and checks that
   the file holds exactly the data the shape needs. Returns -1 with a message on any error. */
int npy_parse_header(const unsigned char *head, size_t head_len, uint64_t file_size, npy_array *out,
                     size_t *data_offset, char *err, size_t err_size);
void npy_free(npy_array *a);

/* Writes count = prod(shape) floats as a little-endian float32, C-order .npy file (format 1.0),
   which npy_read and numpy.load read back. Returns 0, or -1 with a message in err. */
int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, char *err, size_t err_size);

#endif
