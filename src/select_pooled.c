/* Host side of cl/select_pooled.cl: TOPK and CDF, two selectors on one pair of kernels. */
#include "internal.h"

enum { POOL, SCORES };

static bool lay_out(clsa_plan *plan, clsa_selector_state *state, int64_t *offset)
{
    const clsa_shape *s = &plan->shape;
    const int64_t nkb = plan->mask.num_k_blocks;
    return clsa_workspace_region(&state->regions[POOL], offset, s->batch * s->kv_heads, nkb,
                                 clsa_round_up(s->head_dim, 16), 4) &&
           clsa_workspace_region(&state->regions[SCORES], offset, plan->mask.rows, nkb, 1, 4);
}

static clsa_status build(clsa_plan *plan, clsa_selector_state *state)
{
    const char *const names[2] = {"select_pooled", "pool_keys"};
    return clsa_select_build(plan, state, "select_pooled", clsa_cl_select_pooled, names, 2);
}

static clsa_status pool_keys(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                             cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    const clsa_shape *s = &plan->shape;
    cl_int kv_heads = (cl_int)s->kv_heads, kv_len = (cl_int)s->kv_len;
    cl_int num_k_blocks = (cl_int)plan->mask.num_k_blocks;
    cl_long pool_at = (cl_long)state->regions[POOL];
    clsa_args a = {state->kernels[1], 0, CL_SUCCESS};
    CLSA_ARG(&a, kv_heads);
    CLSA_ARG(&a, kv_len);
    CLSA_ARG(&a, num_k_blocks);
    clsa_arg_tensor(&a, call->k, &plan->k);
    CLSA_ARG(&a, call->workspace);
    CLSA_ARG(&a, pool_at);
    if (a.err)
        return clsa_fail(plan->ctx, (clsa_status)a.err, "setting pool_keys argument %u", a.index - 1);
    const size_t global[2] = {(size_t)plan->mask.num_k_blocks, (size_t)(s->batch * s->kv_heads)};
    const size_t local[2] = {CLSA_PRIVATE_LOCAL, 1};
    return clsa_enqueue(plan->ctx, call->queue, state->kernels[1], "pool_keys", global, local, num_wait, wait_list,
                        out);
}

/* The kernel serves the heads of the method it is given: TOPK's and CDF's entries launch it apart. */
static clsa_status select_method(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                                 clsa_method method, cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    cl_event pooled = NULL;
    clsa_status st = pool_keys(plan, state, call, num_wait, wait_list, &pooled);
    const cl_long args[3] = {(cl_long)state->regions[POOL], (cl_long)state->regions[SCORES], (cl_long)method};
    if (!st)
        st = clsa_select_rows(plan, state->kernels[0], "select_pooled", call, args, 3, 1, &pooled, out);
    if (pooled)
        clReleaseEvent(pooled);
    return st;
}

static clsa_status select_topk(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                               cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    return select_method(plan, state, call, CLSA_METHOD_TOPK, num_wait, wait_list, out);
}

static clsa_status select_cdf(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                              cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    return select_method(plan, state, call, CLSA_METHOD_CDF, num_wait, wait_list, out);
}

const clsa_selector clsa_select_topk = {
    .method = CLSA_METHOD_TOPK,
    .lay_out = lay_out,
    .build = build,
    .select = select_topk,
    .release = clsa_select_release,
};

const clsa_selector clsa_select_cdf = {
    .method = CLSA_METHOD_CDF,
    .lay_out = lay_out,
    .build = build,
    .select = select_cdf,
    .release = clsa_select_release,
};
