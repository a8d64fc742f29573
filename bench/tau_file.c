/* The per-head tau file (bench/tau_file.h). */
#include "tau_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_LINE = 1024 };

/* Parses one line: 1 for an entry (layer, head, tau), 0 for a comment or blank, -1 if malformed. */
static int parse_line(const char *line, long *layer, long *head, float *tau)
{
    const char *p = line + strspn(line, " \t\r\n");
    if (*p == '\0' || *p == '#')
        return 0;
    char *end;
    errno = 0;
    *layer = strtol(p, &end, 10);
    if (end == p || errno || *layer < 0 || *layer > 1000000)
        return -1;
    p = end;
    *head = strtol(p, &end, 10);
    if (end == p || errno || *head < 0 || *head > 1000000)
        return -1;
    p = end;
    *tau = strtof(p, &end);
    if (end == p || errno || !isfinite(*tau) || *tau < 0.0f)
        return -1;
    return end[strspn(end, " \t\r\n")] == '\0' ? 1 : -1;
}

/* Reads every line of path into a NULL-terminated array (missing file: an empty array when
   missing_ok). Checks each line and, for layer `layer`, that heads are < heads and not repeated,
   marking them in seen (may be NULL). Returns NULL with a message on error. */
static char **read_lines(const char *path, int missing_ok, int layer, int heads, float *tau, unsigned char *seen,
                         char *err, size_t n)
{
    FILE *f = fopen(path, "r");
    size_t count = 0, cap = 16;
    char **lines = calloc(cap, sizeof *lines);
    if (!lines) {
        snprintf(err, n, "out of memory");
        if (f)
            fclose(f);
        return NULL;
    }
    if (!f) {
        if (missing_ok && errno == ENOENT)
            return lines;
        snprintf(err, n, "%s: %s", path, strerror(errno));
        free(lines);
        return NULL;
    }
    char buf[MAX_LINE];
    int number = 0, bad = 0;
    while (!bad && fgets(buf, sizeof buf, f)) {
        ++number;
        long l, h;
        float t;
        const int kind = strchr(buf, '\n') || feof(f) ? parse_line(buf, &l, &h, &t) : -1;
        if (kind < 0) {
            snprintf(err, n, "%s:%d: expected \"LAYER HEAD TAU\" (integers >= 0, a finite TAU >= 0) or a # comment",
                     path, number);
            bad = 1;
        } else if (kind == 1 && l == layer && seen) {
            if (h >= heads) {
                snprintf(err, n, "%s:%d: layer %d has head %ld, but the tensors have %d query heads", path, number,
                         layer, h, heads);
                bad = 1;
            } else if (seen[h]) {
                snprintf(err, n, "%s:%d: layer %d head %ld appears twice", path, number, layer, h);
                bad = 1;
            } else {
                seen[h] = 1;
                tau[h] = t;
            }
        }
        if (!bad && count + 2 > cap) {
            char **grown = realloc(lines, 2 * cap * sizeof *lines);
            if (!grown) {
                snprintf(err, n, "out of memory");
                bad = 1;
            } else {
                memset(grown + cap, 0, cap * sizeof *lines);
                lines = grown, cap *= 2;
            }
        }
        if (!bad && !(lines[count++] = strdup(buf))) {
            snprintf(err, n, "out of memory");
            bad = 1;
        }
    }
    fclose(f);
    if (bad) {
        for (size_t i = 0; i < count; ++i)
            free(lines[i]);
        free(lines);
        return NULL;
    }
    return lines;
}

static void free_lines(char **lines)
{
    for (size_t i = 0; lines[i]; ++i)
        free(lines[i]);
    free(lines);
}

int tau_file_read(const char *path, int layer, int heads, float *tau, char *err, size_t err_size)
{
    if (heads < 1 || layer < 0) {
        snprintf(err, err_size, "tau file: layer %d, %d heads: need layer >= 0 and heads >= 1", layer, heads);
        return -1;
    }
    float *got = calloc((size_t)heads, sizeof *got);
    unsigned char *seen = calloc((size_t)heads, 1);
    char **lines = got && seen ? read_lines(path, 0, layer, heads, got, seen, err, err_size) : NULL;
    int rc = lines ? 0 : -1;
    if (!got || !seen)
        snprintf(err, err_size, "out of memory");
    for (int h = 0; rc == 0 && h < heads; ++h)
        if (!seen[h]) {
            snprintf(err, err_size, "%s: no threshold for layer %d head %d", path, layer, h);
            rc = -1;
        }
    if (rc == 0)
        memcpy(tau, got, (size_t)heads * sizeof *tau);
    if (lines)
        free_lines(lines);
    free(got), free(seen);
    return rc;
}

int tau_file_write_layer(const char *path, int layer, int heads, const float *tau, char *err, size_t err_size)
{
    for (int h = 0; h < heads; ++h)
        if (!isfinite(tau[h]) || tau[h] < 0.0f) {
            snprintf(err, err_size, "tau of head %d is %g: must be finite and >= 0", h, (double)tau[h]);
            return -1;
        }
    char **lines = read_lines(path, 1, -1, 0, NULL, NULL, err, err_size);
    if (!lines)
        return -1;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp) {
        snprintf(err, err_size, "%s: path too long", path);
        free_lines(lines);
        return -1;
    }
    const int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        snprintf(err, err_size, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd), unlink(tmp);
        free_lines(lines);
        return -1;
    }
    int wrote_header = lines[0] != NULL;
    if (!wrote_header)
        fprintf(f, "# clsa tau file: LAYER HEAD TAU per line (bench/tau_file.h); tau <= 1e-5 is a dense head\n");
    for (size_t i = 0; lines[i]; ++i) {
        long l, h;
        float t;
        if (parse_line(lines[i], &l, &h, &t) == 1 && l == layer)
            continue; /* replaced below */
        fputs(lines[i], f);
        if (!strchr(lines[i], '\n'))
            fputc('\n', f);
    }
    for (int h = 0; h < heads; ++h)
        fprintf(f, "%d %d %.9g\n", layer, h, (double)tau[h]);
    free_lines(lines);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        snprintf(err, err_size, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int tau_file_keep_smaller(const char *path, int layer, int heads, float *tau)
{
    float *old = calloc((size_t)heads, sizeof *old);
    char err[256];
    const int held = old && tau_file_read(path, layer, heads, old, err, sizeof err) == 0;
    for (int h = 0; held && h < heads; ++h)
        tau[h] = old[h] < tau[h] ? old[h] : tau[h];
    free(old);
    return held;
}
