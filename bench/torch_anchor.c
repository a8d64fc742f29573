#include "torch_anchor.h"

#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLSA_SOURCE_ROOT
#define CLSA_SOURCE_ROOT "."
#endif

/* Room for the temporary directory (at most DIR_MAX bytes) and a file name in it. */
#define DIR_MAX 1024
#define PATH_MAX_LEN (DIR_MAX + 16)

/* The Python to run the script with (torch_anchor.h gives the order). */
static const char *choose_python(char *buf, size_t n)
{
    const char *env = getenv("CLSA_TORCH_PYTHON");
    if (env && *env)
        return env;
    snprintf(buf, n, "%s/build/torch-venv/bin/python", CLSA_SOURCE_ROOT);
    return access(buf, X_OK) == 0 ? buf : "python3";
}

/* Runs argv[0] (searched on PATH) with its stdout into buf (NUL-terminated, truncated to n - 1
   bytes); stderr stays clsa-bench's. Returns the exit status, or -1 when it could not start. */
static int run_capture(char *const argv[], char *buf, size_t n)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL); /* so that clsa-bench's lines come before anything the child prints */
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]), close(fds[1]);
        execvp(argv[0], argv);
        printf("{\"error\": \"cannot run %s: %s\"}\n", argv[0], strerror(errno));
        fflush(stdout);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t got;
    char drain[4096];
    do {
        /* Past the buffer the rest is read and dropped, so that the child never blocks on a full pipe. */
        const int room = used + 1 < n;
        got = read(fds[0], room ? buf + used : drain, room ? n - 1 - used : sizeof drain);
        if (got > 0 && room)
            used += (size_t)got;
    } while (got > 0 || (got < 0 && errno == EINTR));
    buf[used] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The text after `"key": ` in the script's JSON line, or NULL. The keys are the script's own. */
static const char *json_value(const char *json, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    const char *at = strstr(json, pattern);
    return at ? at + strlen(pattern) : NULL;
}

/* Copies a JSON string value (escapes reduced to the escaped character) into dst; "unknown" when
   the key is missing or not a string (e.g. null). */
static void json_text(const char *json, const char *key, char *dst, size_t n)
{
    const char *at = json_value(json, key);
    snprintf(dst, n, "unknown");
    if (!at || *at != '"')
        return;
    size_t used = 0;
    for (++at; *at && *at != '"' && used + 1 < n; ++at) {
        if (*at == '\\' && at[1])
            ++at;
        dst[used++] = *at;
    }
    dst[used] = '\0';
}

/* Writes q, k, v as dir/{q,k,v}.npy with their [B, H, L, D] shapes. */
static int write_inputs(const char *dir, const clsa_shape *s, const float *q, const float *k, const float *v,
                        char *why, size_t n)
{
    const int64_t q_dims[4] = {s->batch, s->q_heads, s->q_len, s->head_dim};
    const int64_t kv_dims[4] = {s->batch, s->kv_heads, s->kv_len, s->head_dim};
    const struct {
        const char *name;
        const float *data;
        const int64_t *dims;
    } inputs[3] = {{"q", q, q_dims}, {"k", k, kv_dims}, {"v", v, kv_dims}};
    for (int i = 0; i < 3; ++i) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof path, "%s/%s.npy", dir, inputs[i].name);
        if (npy_write_f32(path, inputs[i].data, 4, inputs[i].dims, why, n) != 0)
            return -1;
    }
    return 0;
}

/* Reads dir/o.npy into out, which holds `count` floats. */
static int read_output(const char *dir, float *out, int64_t count, char *why, size_t n)
{
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof path, "%s/o.npy", dir);
    npy_array a;
    if (npy_read(path, &a, why, n) != 0)
        return -1;
    const int ok = !a.is_f16 && a.count == count;
    if (ok)
        memcpy(out, a.data, sizeof(float) * (size_t)count);
    else
        snprintf(why, n, "%s: not the f32 output of q's size", path);
    npy_free(&a);
    return ok ? 0 : -1;
}

/* Runs the script on the files in dir and parses its JSON line into run. */
static int run_script(const char *dir, const clsa_shape *s, int threads, int repeat, int warmup, torch_sdpa_run *run,
                      char *why, size_t n)
{
    char python_buf[PATH_MAX_LEN], script[PATH_MAX_LEN], qp[PATH_MAX_LEN], kp[PATH_MAX_LEN], vp[PATH_MAX_LEN],
        op[PATH_MAX_LEN], scale[32], th[16], rep[16], warm[16];
    const char *python = choose_python(python_buf, sizeof python_buf);
    snprintf(script, sizeof script, "%s/bench/torch_sdpa.py", CLSA_SOURCE_ROOT);
    snprintf(qp, sizeof qp, "%s/q.npy", dir), snprintf(kp, sizeof kp, "%s/k.npy", dir);
    snprintf(vp, sizeof vp, "%s/v.npy", dir), snprintf(op, sizeof op, "%s/o.npy", dir);
    snprintf(scale, sizeof scale, "%.9g", (double)s->scale); /* 0: the script's default, 1/sqrt(D) */
    snprintf(th, sizeof th, "%d", threads), snprintf(rep, sizeof rep, "%d", repeat);
    snprintf(warm, sizeof warm, "%d", warmup);
    char *argv[] = {(char *)python, script, "--q", qp, "--k", kp, "--v", vp, "--out", op, "--scale", scale,
                    "--threads", th, "--repeat", rep, "--warmup", warm, s->causal ? "--causal" : NULL, NULL};
    static char json[1 << 16];
    const int status = run_capture(argv, json, sizeof json);
    const char *median = json_value(json, "median_ms"), *used_threads = json_value(json, "threads");
    if (status == 0 && median && used_threads) {
        run->median_ms = strtod(median, NULL);
        run->threads = atoi(used_threads);
        json_text(json, "torch_version", run->version, sizeof run->version);
        json_text(json, "backend", run->backend, sizeof run->backend);
        json_text(json, "gqa", run->gqa, sizeof run->gqa);
        return 0;
    }
    char error[512];
    json_text(json, "error", error, sizeof error);
    if (status < 0)
        snprintf(why, n, "cannot start %s", python);
    else if (strcmp(error, "unknown") != 0)
        snprintf(why, n, "%s", error);
    else
        snprintf(why, n, "%s %s exited with status %d without a result", python, script, status);
    return -1;
}

int torch_sdpa_anchor(const clsa_shape *shape, const float *q, const float *k, const float *v, int threads,
                      int repeat, int warmup, torch_sdpa_run *run, float *out, char *why, size_t why_size)
{
    if (shape->dtype != CLSA_F32 || shape->q_strides.token || shape->k_strides.token || shape->v_strides.token ||
        shape->o_strides.token) {
        snprintf(why, why_size, "the torch anchor takes contiguous f32 tensors only");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    char dir[DIR_MAX];
    snprintf(dir, sizeof dir, "%s/clsa-torch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(why, why_size, "cannot create a temporary directory %s: %s", dir, strerror(errno));
        return -1;
    }
    memset(run, 0, sizeof *run);
    int rc = write_inputs(dir, shape, q, k, v, why, why_size);
    if (rc == 0)
        rc = run_script(dir, shape, threads, repeat, warmup, run, why, why_size);
    if (rc == 0)
        rc = read_output(dir, out, shape->batch * shape->q_heads * shape->q_len * shape->head_dim, why, why_size);
    const char *names[] = {"q", "k", "v", "o"};
    for (int i = 0; i < 4; ++i) {
        char path[PATH_MAX_LEN];
        snprintf(path, sizeof path, "%s/%s.npy", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return rc;
}
