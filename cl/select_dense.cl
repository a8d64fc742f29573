/* The dense selector: every visible key block, for the dense heads of a CLSA_METHOD_PER_HEAD plan.
   Defines: those of cl/common.cl's block selectors. */
__kernel void select_dense(SELECT_ARGS)
{
    select_row r;
    if (!SELECT_BEGIN(r) || r.settings[HS_METHOD] != METHOD_DENSE)
        return;
    WRITE_MASK_ROW(r, kb, true);
}
