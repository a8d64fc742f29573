/* The sliding-window selector: blocks holding a key of some row's window. Causal form: the
   window_tokens keys ending at the row's diagonal key d; symmetric form: keys within window_tokens
   of d on either side. The windows of a query block's rows form one range of keys, from the first
   row's window start to the last row's window end. Defines: those of cl/common.cl's selectors. */
__kernel void select_sliding(SELECT_ARGS)
{
    select_row r;
    if (!SELECT_BEGIN(r) || r.settings[HS_METHOD] != METHOD_SLIDING)
        return;
    const long window = r.settings[HS_WINDOW];
    const bool symmetric = r.settings[HS_SYMMETRIC] != 0;
    const long first = symmetric ? r.diag_first - window : r.diag_first - window + 1;
    const long last = min(symmetric ? r.diag_last + window : (long)r.diag_last, (long)r.last_visible);
    WRITE_MASK_ROW(r, kb, (long)kb * BLOCK_K <= last && (long)kb * BLOCK_K + BLOCK_K - 1 >= first);
}
