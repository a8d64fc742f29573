/* Host side of cl/select_sliding.cl: a sliding window, causal or symmetric. */
#include "internal.h"

static clsa_status build(clsa_plan *plan, clsa_selector_state *state)
{
    const char *const names[1] = {"select_sliding"};
    return clsa_select_build(plan, state, "select_sliding", clsa_cl_select_sliding, names, 1);
}

const clsa_selector clsa_select_sliding = {
    .method = CLSA_METHOD_SLIDING,
    .build = build,
    .select = clsa_select_rows_enqueue,
    .release = clsa_select_release,
};
