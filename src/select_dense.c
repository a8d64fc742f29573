/* Host side of cl/select_dense.cl: every visible block, for dense heads of a per-head plan. */
#include "internal.h"

static clsa_status build(clsa_plan *plan, clsa_selector_state *state)
{
    const char *const names[1] = {"select_dense"};
    return clsa_select_build(plan, state, "select_dense", clsa_cl_select_dense, names, 1);
}

const clsa_selector clsa_select_dense = {
    .method = CLSA_METHOD_DENSE,
    .build = build,
    .select = clsa_select_rows_enqueue,
    .release = clsa_select_release,
};
