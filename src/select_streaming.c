/* Host side of cl/select_streaming.cl: sink, local and diagonal blocks. */
#include "internal.h"

static clsa_status build(clsa_plan *plan, clsa_selector_state *state)
{
    const char *const names[1] = {"select_streaming"};
    return clsa_select_build(plan, state, "select_streaming", clsa_cl_select_streaming, names, 1);
}

const clsa_selector clsa_select_streaming = {
    .method = CLSA_METHOD_STREAMING,
    .build = build,
    .select = clsa_select_rows_enqueue,
    .release = clsa_select_release,
};
