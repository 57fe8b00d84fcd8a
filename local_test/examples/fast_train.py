"""An honest loop that beats the template: the same arithmetic with less Python around it.

The demo submits it next to local_test/train.py, and the harness's tests use it as their faster honest
submission (tests/fixtures/train/honest_fast.py links here). What it changes:
- the given AdamW switched to its fused kernel (same hyper-parameters and state, one kernel instead of a
  per-tensor loop): the optimizer we are given is the one whose final state the validator compares;
- a direct pass over the model's own modules (the same weights, layers and maths as the transformers
  forward), with the rotary tables computed once per call instead of once per step, and no cache, mask
  or output objects built on every step;
- torch's fused RMSNorm, and the SiLU-gated MLP written inline.
Every step still runs forward, backward and the optimizer on every parameter, so the final weights,
loss and logits match the reference run within the tolerances."""
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F


# bf16 autocast wherever the validator trains in it (see local_test/train.py).
BF16 = os.environ.get("CRUSADES_AUTOCAST", "bf16" if torch.cuda.is_available() else "off") == "bf16"


@dataclass
class InnerStepsResult:
    final_logits: torch.Tensor
    total_tokens: int
    final_loss: float


def _rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _norm(module, x):
    return F.rms_norm(x, module.weight.shape, module.weight, module.variance_epsilon)


def _forward(model, input_ids, cos, sin):
    h = model.model.embed_tokens(input_ids)
    bsz, seq, _ = h.shape
    for layer in model.model.layers:
        attn = layer.self_attn
        x = _norm(layer.input_layernorm, h)
        q = attn.q_proj(x).view(bsz, seq, -1, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(bsz, seq, -1, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(bsz, seq, -1, attn.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attn.scaling, enable_gqa=True)
        h = h + attn.o_proj(o.transpose(1, 2).reshape(bsz, seq, -1))
        x, mlp = _norm(layer.post_attention_layernorm, h), layer.mlp
        h = h + mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    return model.lm_head(_norm(model.model.norm, h))


def inner_steps(model, data_iterator, optimizer, num_steps, device):
    for group in optimizer.param_groups:
        group.update(fused=True, foreach=False)
    rope = model.model.rotary_emb
    cos = sin = None
    total_tokens = 0
    logits = loss = None
    for _ in range(num_steps):
        batch = next(data_iterator).to(device, non_blocking=True)
        input_ids, labels = batch[:, :-1], batch[:, 1:]
        if cos is None:
            positions = torch.arange(input_ids.shape[1], device=device)[None]
            cos, sin = (t[:, None] for t in rope(model.model.embed_tokens.weight, positions))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=BF16):
            logits = _forward(model, input_ids, cos, sin)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total_tokens += batch.numel()
    return InnerStepsResult(final_logits=logits.detach(), total_tokens=total_tokens, final_loss=loss.item())
