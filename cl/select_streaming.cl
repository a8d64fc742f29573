/* The streaming selector (StreamingLLM; DuoAttention's streaming heads): the sink keys, the local
   window and the diagonal, which are exactly the forced blocks (the host sets HS_FORCED to 1).
   Defines: those of cl/common.cl's block selectors. */
__kernel void select_streaming(SELECT_ARGS)
{
    select_row r;
    if (!SELECT_BEGIN(r) || r.settings[HS_METHOD] != METHOD_STREAMING)
        return;
    WRITE_MASK_ROW(r, kb, false);
}
