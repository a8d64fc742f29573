#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int npy_read(const char *path, npy_array *out, char *err, size_t n)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, n, path, "cannot open");
    unsigned char pre[10];
    int rc = -1;
    char *header = NULL;
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fail(err, n, path, "not a .npy file (bad magic)");
        goto done;
    }
    uint32_t hlen = 0;
    if (pre[6] == 1) {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) { fail(err, n, path, "truncated header"); goto done; }
        hlen = (uint32_t)b[0] | ((uint32_t)b[1] << 8);
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char b[4];
        if (fread(b, 1, 4, f) != 4) { fail(err, n, path, "truncated header"); goto done; }
        hlen = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    } else {
        fail(err, n, path, "unsupported .npy version");
        goto done;
    }
    if (hlen == 0 || hlen > 1 << 20) { fail(err, n, path, "implausible header length"); goto done; }
    header = malloc(hlen + 1);
    if (!header || fread(header, 1, hlen, f) != hlen) { fail(err, n, path, "truncated header"); goto done; }
    header[hlen] = '\0';
    const char *descr = field(header, "descr"), *order = field(header, "fortran_order"), *shape = field(header, "shape");
    if (!descr || !order || !shape) { fail(err, n, path, "header lacks descr, fortran_order or shape"); goto done; }
    if (strncmp(descr, "'<f4'", 5) == 0) out->is_f16 = 0;
    else if (strncmp(descr, "'<f2'", 5) == 0) out->is_f16 = 1;
    else { fail(err, n, path, "dtype must be little-endian float32 ('<f4') or float16 ('<f2')"); goto done; }
    if (strncmp(order, "False", 5) != 0) { fail(err, n, path, "fortran_order must be False (C order)"); goto done; }
    if (*shape != '(') { fail(err, n, path, "malformed shape"); goto done; }
    const char *p = shape + 1;
    out->count = 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',')
            ++p;
        if (*p == ')')
            break;
        char *end = NULL;
        long long d = strtoll(p, &end, 10);
        if (end == p || d <= 0 || d > (1ll << 40) || out->ndim == 8) { fail(err, n, path, "malformed shape"); goto done; }
        out->shape[out->ndim++] = d;
        if (__builtin_mul_overflow(out->count, (int64_t)d, &out->count) || out->count > (1ll << 40)) {
            fail(err, n, path, "shape too large");
            goto done;
        }
        p = end;
    }
    if (*p != ')' || out->ndim == 0) { fail(err, n, path, "malformed shape"); goto done; }
    const size_t es = out->is_f16 ? 2 : 4, bytes = (size_t)out->count * es;
    out->data = malloc(bytes);
    if (!out->data) { fail(err, n, path, "out of memory"); goto done; }
    if (fread(out->data, 1, bytes, f) != bytes) { fail(err, n, path, "file shorter than its shape says"); goto done; }
    if (fgetc(f) != EOF) { fail(err, n, path, "file longer than its shape says"); goto done; }
    rc = 0;
done:
    free(header);
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
