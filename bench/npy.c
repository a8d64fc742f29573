#include "npy.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(char *err, size_t n, const char *path, const char *why)
{
    snprintf(err, n, "%s: %s", path, why);
    return -1;
}

/* Finds `'key':` in the header dict and returns the text after it, or NULL. */
static const char *field(const char *header, const char *key)
{
    char pattern[32];
    snprintf(pattern, sizeof pattern, "'%s':", key);
    const char *at = strstr(header, pattern);
    if (!at)
        return NULL;
    at += strlen(pattern);
    while (*at == ' ')
        ++at;
    return at;
}

/* The preamble and header of a .npy file: sets out's dtype, shape and count, and *data_offset.
   Checks that `file_size` is exactly the header plus the data its shape needs, so that nothing is
   allocated for a shape the file does not hold. */
int npy_parse_header(const unsigned char *head, size_t head_len, uint64_t file_size, npy_array *out,
                     size_t *data_offset, char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    const char *name = "header";
    if (head_len < 8 || memcmp(head, "\x93NUMPY", 6) != 0)
        return fail(err, n, name, "not a .npy file (bad magic)");
    if (head_len < 10)
        return fail(err, n, name, "truncated header");
    uint32_t hlen = 0;
    size_t at = 0;
    if (head[6] == 1) {
        hlen = (uint32_t)head[8] | ((uint32_t)head[9] << 8);
        at = 10;
    } else if (head[6] == 2 || head[6] == 3) {
        if (head_len < 12)
            return fail(err, n, name, "truncated header");
        hlen = (uint32_t)head[8] | ((uint32_t)head[9] << 8) | ((uint32_t)head[10] << 16) | ((uint32_t)head[11] << 24);
        at = 12;
    } else {
        return fail(err, n, name, "unsupported .npy version");
    }
    if (hlen == 0 || hlen > NPY_MAX_HEADER)
        return fail(err, n, name, "implausible header length");
    if (head_len - at < hlen)
        return fail(err, n, name, "truncated header");
    char header[NPY_MAX_HEADER + 1];
    memcpy(header, head + at, hlen);
    header[hlen] = '\0';
    if (strlen(header) != hlen)
        return fail(err, n, name, "NUL byte in the header");
    const char *descr = field(header, "descr"), *order = field(header, "fortran_order"), *shape = field(header, "shape");
    if (!descr || !order || !shape)
        return fail(err, n, name, "header lacks descr, fortran_order or shape");
    if (strncmp(descr, "'<f4'", 5) == 0)
        out->is_f16 = 0;
    else if (strncmp(descr, "'<f2'", 5) == 0)
        out->is_f16 = 1;
    else
        return fail(err, n, name, "dtype must be little-endian float32 ('<f4') or float16 ('<f2')");
    if (strncmp(order, "False", 5) != 0)
        return fail(err, n, name, "fortran_order must be False (C order)");
    if (*shape != '(')
        return fail(err, n, name, "malformed shape");
    const char *p = shape + 1;
    out->count = 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',')
            ++p;
        if (*p == ')')
            break;
        char *end = NULL;
        long long d = strtoll(p, &end, 10);
        if (end == p || d <= 0 || d > (1ll << 40) || out->ndim == 8)
            return fail(err, n, name, "malformed shape");
        out->shape[out->ndim++] = d;
        if (__builtin_mul_overflow(out->count, (int64_t)d, &out->count) || out->count > (1ll << 40))
            return fail(err, n, name, "shape too large");
        p = end;
    }
    if (*p != ')' || out->ndim == 0)
        return fail(err, n, name, "malformed shape");
    const uint64_t es = out->is_f16 ? 2 : 4, need = (uint64_t)out->count * es, offset = at + hlen;
    if (file_size < offset || file_size - offset != need) {
        snprintf(err, n, "%s: the file holds %llu data bytes but its shape needs %llu", name,
                 (unsigned long long)(file_size < offset ? 0 : file_size - offset), (unsigned long long)need);
        return -1;
    }
    *data_offset = (size_t)offset;
    return 0;
}

int npy_read(const char *path, npy_array *out, char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: a FIFO at the path must not hang the open; only regular files are read. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return fail(err, n, path, "cannot open");
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, n, path, "not a regular file");
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return fail(err, n, path, "cannot open");
    }
    unsigned char *head = malloc(NPY_MAX_HEADER + 12);
    const size_t head_len = head ? fread(head, 1, NPY_MAX_HEADER + 12, f) : 0;
    size_t offset = 0;
    int rc = -1;
    char why[256];
    if (!head) {
        fail(err, n, path, "out of memory");
    } else if (npy_parse_header(head, head_len, (uint64_t)st.st_size, out, &offset, why, sizeof why) != 0) {
        snprintf(err, n, "%s: %s", path, why + strlen("header: "));
    } else {
        const size_t bytes = (size_t)out->count * (out->is_f16 ? 2 : 4);
        out->data = malloc(bytes ? bytes : 1);
        if (!out->data)
            fail(err, n, path, "out of memory");
        else if (fseek(f, (long)offset, SEEK_SET) != 0 || fread(out->data, 1, bytes, f) != bytes)
            fail(err, n, path, "file shorter than its shape says (it changed while being read)");
        else
            rc = 0;
    }
    free(head);
    fclose(f);
    if (rc)
        npy_free(out);
    return rc;
}

void npy_free(npy_array *a)
{
    free(a->data);
    a->data = NULL;
}

int npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, char *err, size_t n)
{
    if (ndim < 1 || ndim > 8)
        return fail(err, n, path, "npy_write_f32 takes 1 to 8 dimensions");
    char header[512]; /* 8 dimensions of 20 digits and the padding fit */
    int64_t count = 1;
    size_t len = (size_t)snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; ++i) {
        /* Python's tuple syntax: (3,) for one dimension, (2, 3, 4) for more. */
        len += (size_t)snprintf(header + len, sizeof header - len, "%lld%s", (long long)shape[i],
                                ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
        count *= shape[i];
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "), }");
    /* NumPy pads the header with spaces and a newline so that the data starts 64-byte aligned. */
    while ((10 + len + 1) % 64)
        header[len++] = ' ';
    header[len++] = '\n';
    const unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xFF),
                                        (unsigned char)(len >> 8)};
    FILE *f = fopen(path, "wb");
    if (!f)
        return fail(err, n, path, "cannot create");
    const int ok = fwrite(preamble, 1, sizeof preamble, f) == sizeof preamble && fwrite(header, 1, len, f) == len &&
                   fwrite(data, sizeof(float), (size_t)count, f) == (size_t)count;
    if (fclose(f) != 0 || !ok)
        return fail(err, n, path, "write failed (disk full?)");
    return 0;
}
