/* Host side of cl/select_xattn.cl: XAttention's antidiagonal scores. */
#include "internal.h"

static bool lay_out(clsa_plan *plan, clsa_selector_state *state, int64_t *offset)
{
    return clsa_workspace_region(&state->regions[0], offset, plan->mask.rows, plan->mask.num_k_blocks, 1, 4);
}

static clsa_status build(clsa_plan *plan, clsa_selector_state *state)
{
    const char *const names[1] = {"select_xattn"};
    return clsa_select_build(plan, state, "select_xattn", clsa_cl_select_xattn, names, 1);
}

static clsa_status select(clsa_plan *plan, clsa_selector_state *state, const clsa_select_call *call,
                          cl_uint num_wait, const cl_event *wait_list, cl_event *out)
{
    const cl_long scores_at = (cl_long)state->regions[0];
    return clsa_select_rows(plan, state->kernels[0], "select_xattn", call, &scores_at, 1, num_wait, wait_list, out);
}

const clsa_selector clsa_select_xattn = {
    .method = CLSA_METHOD_XATTN,
    .lay_out = lay_out,
    .build = build,
    .select = select,
    .release = clsa_select_release,
};
