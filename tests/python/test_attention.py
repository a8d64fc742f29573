"""The Python package against a float64 reference, on the device CLSA_DEVICE selects.

Inputs are fresh random numbers each run; the seed is printed (pytest -s shows it) and
CLSA_TEST_SEED repeats a run.
"""
import os

import numpy as np
import pytest

import clsa

SEED = int(os.environ.get("CLSA_TEST_SEED", np.random.SeedSequence().entropy % (1 << 63)))
print(f"# CLSA_TEST_SEED={SEED}")


@pytest.fixture
def rng(request):
    # One stream per test, derived from the printed seed and the test's name.
    return np.random.default_rng([SEED, sum(map(ord, request.node.name))])


@pytest.fixture(autouse=True)
def fresh_context():
    """With CLSA_TEST_FRESH_CONTEXT set (the test command's oclgrind run), each test gets its own
    OpenCL context: see scripts/test.sh and tests/README.md, "oclgrind"."""
    yield
    if os.environ.get("CLSA_TEST_FRESH_CONTEXT"):
        for device in clsa._devices.values():
            device.close()
        clsa._devices.clear()


def reference(q, k, v, causal, scale=None, keep=None, block_q=64, block_k=32):
    """float64 attention; keep (bool [B, Hq, q blocks, key blocks]) limits each row to its kept
    blocks, and a row with no visible kept key gives zeros."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    out = np.zeros((B, Hq, Lq, D))
    rows, keys = np.arange(Lq)[:, None], np.arange(Lk)[None, :]
    for b in range(B):
        for h in range(Hq):
            hk = h // (Hq // Hkv)
            s = scale * q[b, h] @ k[b, hk].T
            visible = keys <= rows + Lk - Lq if causal else np.ones((Lq, Lk), bool)
            if keep is not None:
                visible = visible & np.repeat(np.repeat(keep[b, h], block_q, 0), block_k, 1)[:Lq, :Lk]
            s = np.where(visible, s, -np.inf)
            m = s.max(axis=1, keepdims=True)
            p = np.where(visible, np.exp(s - np.where(np.isfinite(m), m, 0.0)), 0.0)
            l = p.sum(axis=1, keepdims=True)
            out[b, h] = np.where(l > 0, p @ v[b, hk] / np.where(l > 0, l, 1.0), 0.0)
    return out


def prune_rule(p, t, bits):
    """Ji et al.'s rule (clsa.h, clsa_shape.value_bits) on float64 probabilities: 0 below t, else p
    or, with bits, the middle of its log bin on [t, 1]."""
    if bits == 0:
        return np.where(p < t, 0.0, p)
    min_exp = np.log2(t)
    base = -min_exp / (2 ** bits - 1)
    with np.errstate(divide="ignore"):
        k = np.clip(np.floor((np.log2(np.maximum(p, t)) - min_exp) / base), 0, 2 ** bits - 2)
    return np.where(p < t, 0.0, np.exp2(min_exp + (k + 0.5) * base))


def pruned_reference(q, k, v, causal, t, bits, eps=1e-4):
    """float64 dense attention with each probability pruned (and quantized), not renormalized.
    Returns the output, an allowance per element (|other choice - kept| x |v| summed over the
    probabilities within eps, relative, of t or a bin edge, which f32 may put either side), and
    per head the pruned, seen and near-t counts."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    out, allow = np.zeros((B, Hq, Lq, D)), np.zeros((B, Hq, Lq, D))
    counts = np.zeros((Hq, 3), np.int64)
    visible = np.arange(Lk)[None, :] <= np.arange(Lq)[:, None] + Lk - Lq if causal else np.ones((Lq, Lk), bool)
    for b in range(B):
        for h in range(Hq):
            hk = h // (Hq // Hkv)
            s = np.where(visible, q[b, h] @ k[b, hk].T / np.sqrt(D), -np.inf)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            kept = prune_rule(p, t, bits)
            other = np.maximum(np.abs(prune_rule(p * (1 - eps), t, bits) - kept),
                               np.abs(prune_rule(p * (1 + eps), t, bits) - kept))
            out[b, h], allow[b, h] = kept @ v[b, hk], other @ np.abs(v[b, hk])
            counts[h] += [(visible & (p < t)).sum(), visible.sum(), (visible & (np.abs(p - t) <= eps * t)).sum()]
    return out, allow, counts


def random_qkv(rng, B, Hq, Hkv, Lq, Lk, D, dtype=np.float32):
    q = rng.standard_normal((B, Hq, Lq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, Lk, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, Lk, D)).astype(dtype)
    return q, k, v


def peaked_qkv(rng, B, Hq, Hkv, Lq, Lk, D):
    """Attention with one strong key per row, its diagonal key (k_j = 4 b_j, q_i = b_d + noise):
    that score is about 4 sqrt(D), the others 4 b.b'/sqrt(D) ~ N(0, 16), so at D >= 64 most blocks
    far from the diagonal fall below SALE's threshold and the mask is sparse, as on real prefill."""
    base = rng.standard_normal((B, Hkv, Lk, D))
    k = (4.0 * base).astype(np.float32)
    v = rng.standard_normal((B, Hkv, Lk, D)).astype(np.float32)
    diag = np.clip(np.arange(Lq) + Lk - Lq, 0, Lk - 1)
    q = np.repeat(base[:, :, diag], Hq // Hkv, axis=1) + 0.1 * rng.standard_normal((B, Hq, Lq, D))
    return q.astype(np.float32), k, v


def max_rel_err(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("B,Hq,Hkv,Lq,Lk,D,causal", [
    (1, 2, 2, 100, 100, 64, True), (2, 4, 2, 65, 65, 80, False), (1, 4, 1, 33, 130, 128, True),
    (1, 1, 1, 1, 1, 16, True), (1, 2, 1, 200, 70, 256, True),
])
def test_dense_f32(rng, B, Hq, Hkv, Lq, Lk, D, causal):
    q, k, v = random_qkv(rng, B, Hq, Hkv, Lq, Lk, D)
    out, stats = clsa.attention(q, k, v, causal=causal, method="dense")
    assert out.shape == q.shape and out.dtype == np.float32
    assert stats.method == "dense" and stats.density == [1.0] * Hq and "attend" in stats.times_ms
    assert max_rel_err(out, reference(q, k, v, causal)) <= 1e-5


def test_dense_scale_and_3d(rng):
    q, k, v = random_qkv(rng, 1, 2, 2, 50, 50, 32)
    out, _ = clsa.attention(q[0], k[0], v[0], causal=False, scale=0.3)
    assert out.shape == (1, 2, 50, 32)
    assert max_rel_err(out, reference(q, k, v, False, scale=0.3)) <= 1e-5


def test_dense_f16(rng):
    q, k, v = random_qkv(rng, 1, 2, 1, 90, 90, 64, np.float16)
    out, _ = clsa.attention(q, k, v, causal=True)
    assert out.dtype == np.float16
    # f32 arithmetic on the f16 inputs, one rounding to f16 at the end
    assert max_rel_err(out, reference(q, k, v, True)) <= 1e-3


@pytest.mark.parametrize("Lq,Lk,D,causal,Hkv", [(300, 300, 64, True, 2), (200, 260, 128, False, 1),
                                                 (700, 700, 64, True, 1)])
def test_sale_matches_reference_on_its_mask(rng, Lq, Lk, D, causal, Hkv):
    q, k, v = peaked_qkv(rng, 1, 2, Hkv, Lq, Lk, D)
    out, stats = clsa.attention(q, k, v, causal=causal, method="sale", tau=0.004, sink_tokens=8, local_tokens=32)
    assert set(stats.times_ms) == {"quantize", "estimate", "attend"}
    keep = stats.mask
    assert keep.shape == (1, 2, -(-Lq // 64), -(-Lk // 32))
    # Each head's density is its kept visible blocks over its visible blocks.
    rows = np.arange(keep.shape[2]) * 64
    last_row = np.minimum(rows + 63, Lq - 1)
    visible = (np.arange(keep.shape[3])[None, :] * 32 <= (last_row + Lk - Lq)[:, None]) if causal \
        else np.ones(keep.shape[2:], bool)
    for h in range(2):
        assert stats.density[h] == pytest.approx((keep[0, h] & visible).sum() / visible.sum(), rel=1e-12)
    assert 0.0 < min(stats.density) and max(stats.density) < 1.0  # blocks were dropped
    assert max_rel_err(out, reference(q, k, v, causal, keep=keep)) <= 1e-5


def test_sale_on_flat_scores_keeps_every_block(rng):
    # Gaussian q and k: every block holds some score near its row's maximum, so all are kept
    # and SALE equals dense attention.
    q, k, v = random_qkv(rng, 1, 2, 1, 300, 300, 64)
    out, stats = clsa.attention(q, k, v, method="sale", tau=0.004, sink_tokens=8, local_tokens=32)
    assert stats.density == [1.0, 1.0]
    assert max_rel_err(out, reference(q, k, v, True)) <= 1e-5


def test_sale_tau_per_head(rng):
    q, k, v = peaked_qkv(rng, 1, 2, 2, 400, 400, 64)
    out, stats = clsa.attention(q, k, v, method="sale", tau=[1e-6, 0.004], sink_tokens=8, local_tokens=32)
    assert stats.density[0] == 1.0 and stats.density[1] < 1.0  # tau <= 1e-5: a dense head
    assert max_rel_err(out[:, :1], reference(q[:, :1], k[:, :1], v[:, :1], True)) <= 1e-5


@pytest.mark.parametrize("t,bits,causal", [(1e-3, 0, True), (1e-3, 3, True), (1e-2, 1, False), (1e-4, 8, True)])
def test_value_prune(rng, t, bits, causal):
    q, k, v = random_qkv(rng, 1, 4, 2, 150, 150, 40)
    q *= 2.0  # peakier rows: probabilities on both sides of t
    out, stats = clsa.attention(q, k, v, causal=causal, value_prune=t, value_bits=bits)
    want, allow, counts = pruned_reference(q, k, v, causal, t, bits)
    assert np.all(np.abs(out - want) <= 1e-5 * np.abs(want).max() + allow)
    assert 0.0 < stats.pruned_fraction < 1.0 and len(stats.pruned_per_head) == 4
    pruned, seen, near = counts.sum(axis=0)
    assert abs(stats.pruned_fraction - pruned / seen) <= near / seen + 1e-12
    for h in range(4):
        assert abs(stats.pruned_per_head[h] - counts[h, 0] / counts[h, 1]) <= counts[h, 2] / counts[h, 1] + 1e-12


def test_value_prune_errors(rng):
    q, k, v = random_qkv(rng, 1, 2, 2, 16, 16, 16)
    _, plain = clsa.attention(q, k, v)
    assert plain.pruned_fraction is None and plain.pruned_per_head is None
    for t, bits, name in [(-1e-3, 0, "CLSA_ERR_INVALID_VALUE_PRUNE"), (1.0, 0, "CLSA_ERR_INVALID_VALUE_PRUNE"),
                          (float("nan"), 0, "CLSA_ERR_INVALID_VALUE_PRUNE"), (0.0, 3, "CLSA_ERR_INVALID_VALUE_PRUNE"),
                          (1e-3, 9, "CLSA_ERR_INVALID_VALUE_BITS")]:
        with pytest.raises(clsa.Error) as e:
            clsa.attention(q, k, v, value_prune=t, value_bits=bits)
        assert e.value.name == name and ("value_bits" if "BITS" in name else "value_prune") in str(e.value)


def test_errors_carry_the_library_message(rng):
    q, k, v = random_qkv(rng, 1, 3, 2, 16, 16, 16)
    with pytest.raises(clsa.Error) as e:
        clsa.attention(q, k, v)
    assert e.value.name == "CLSA_ERR_HEAD_RATIO" and e.value.status == -2003
    q, k, v = random_qkv(rng, 1, 2, 2, 16, 16, 16)
    with pytest.raises(clsa.Error) as e:
        clsa.attention(q, k, v, method="sale", tau=-1.0)
    assert e.value.name == "CLSA_ERR_INVALID_TAU" and "tau" in str(e.value)
    with pytest.raises(clsa.Error) as e:
        clsa.attention(q, k, v, device="no-such-device-anywhere")
    assert e.value.name == "CLSA_ERR_INVALID_OPTION"
    with pytest.raises(clsa.Error) as e:
        clsa.attention(q, k, v, method="sale", block_q=48)
    assert e.value.name == "CLSA_ERR_INVALID_BLOCK_SIZE"
    with pytest.raises(clsa.Error) as e:
        clsa.attention(q, k, v, method="sale", refine_nats=-1.0)
    assert e.value.name == "CLSA_ERR_INVALID_REFINE" and "refine_nats" in str(e.value)


def test_bad_python_arguments(rng):
    q, k, v = random_qkv(rng, 1, 2, 2, 16, 16, 16)
    with pytest.raises(TypeError):
        clsa.attention(q.astype(np.float64), k, v)
    with pytest.raises(TypeError):
        clsa.attention(q, k.astype(np.float16), v)
    with pytest.raises(ValueError):
        clsa.attention(q[0, 0], k, v)
    with pytest.raises(ValueError):
        clsa.attention(q, k, v[:, :, :8])
    with pytest.raises(ValueError):
        clsa.attention(q, k, v, method="topk")
    with pytest.raises(ValueError):
        clsa.attention(q, k, v, method="sale", tau=[0.1, 0.2, 0.3])
    with pytest.raises(TypeError):
        clsa.attention(list(q), k, v)
