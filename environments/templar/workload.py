"""What an evaluation trains on: the model built from a config, its seeded initial weights, the token
batches, and the reference training loop. The supervisor and the worker both import this module, so the
two sides build bit-identical inputs from the same seeds without shipping weights between processes."""
import hashlib
import io
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

# Architectures a config may name. Anything else would mean running code we have not looked at.
ALLOWED_ARCHITECTURES = {"Qwen2ForCausalLM", "LlamaForCausalLM"}

# Dense bf16 peak FLOP/s (no sparsity) for the devices the benchmark targets; MFU is null elsewhere.
PEAK_FLOPS = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]


def derive_seed(seed_hex: str, purpose: str) -> int:
    """A 63-bit seed for one purpose, from the request's 256-bit secret (sha256, stable across processes)."""
    digest = hashlib.sha256(f"{seed_hex}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def resolve_path(path: str, root: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


def read_config(path: str, sha256: str | None = None) -> dict:
    """A config.json's contents; with `sha256`, only if the file's bytes have that hash (the request names the
    config it was built for, so a file changed since, by anyone, is never used)."""
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ValueError(f"{path} has sha256 {digest}, not the {sha256} the request names")
    return json.loads(data.decode("utf-8"))


def config_from(raw: dict):
    """A transformers config from a config.json's contents, refusing architectures we have not looked at."""
    raw = dict(raw)
    archs = raw.get("architectures") or []
    if not archs or any(a not in ALLOWED_ARCHITECTURES for a in archs):
        raise ValueError(f"architectures {archs} not in {sorted(ALLOWED_ARCHITECTURES)}")
    model_type = raw.pop("model_type")
    for key in ("architectures", "transformers_version", "torch_dtype", "dtype"):
        raw.pop(key, None)
    config = AutoConfig.for_model(model_type, **raw)
    config.use_cache = False
    return config


def load_config(path: str):
    try:
        return config_from(read_config(path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def preload_model_code() -> None:
    """Imports the modelling code of every allowed architecture, so a process forked before it knows which
    one a request names already has it (importing Qwen2's takes seconds)."""
    import transformers
    for arch in sorted(ALLOWED_ARCHITECTURES):
        getattr(transformers, arch)


def model_class(config) -> type:
    """Resolving the class imports its modelling code; the supervisor does it once before forking."""
    return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]


def build_model(config, device: torch.device) -> torch.nn.Module:
    """fp32 master weights on the device, sdpa attention, train mode. Weights are set by init_weights."""
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = model_class(config)(config)
    return model.to(torch.float32).train()


def param_layout(config) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every trainable tensor in canonical order, from a weightless (meta) build. It sizes the
    hand-over buffer and fixes the order in which W0 is drawn, whatever a submission does to the module."""
    with torch.device("meta"):
        model = model_class(config)(config)
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def _generator(seed: int, device: torch.device) -> torch.Generator:
    """Our own generator, so nothing global (and nothing a miner patched in its interpreter's RNG state)
    decides W0."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


# W0's rule, named in every calibration's key: a calibration measured under another rule measured another band.
# The MLP is drawn at half the config's std because its gated product (silu(x W_gate) * x W_up) at full scale is
# what makes the model at initialisation sensitive: bf16 rounding differences between honest kernels grow
# through it layer by layer, and the honest band grows with them, while an fp8 GEMM's error stays fp8's own.
# Measured on the 12-layer lab profile (bench/gradient_noise.py, README): the MLP at half scale narrows the
# honest exp_avg band 4x (0.044 -> 0.010 against the reference) with the attention's scale, entropy and
# query/key gradients unchanged; the embedding or the attention's value path at a smaller scale did not.
MLP_STD_SCALE = 0.5
W0_RULE = f"matrices N(0, std), mlp matrices N(0, {MLP_STD_SCALE} std), biases 0, norm gains 1"


def _draw(gen: torch.Generator, name: str, t: torch.Tensor, std: float) -> None:
    """W0's rule (W0_RULE), in place."""
    if t.ndim >= 2:
        t.normal_(0.0, std * MLP_STD_SCALE if ".mlp." in name else std, generator=gen)
    elif name.endswith("bias"):
        t.zero_()
    else:
        t.fill_(1.0)


@torch.no_grad()
def init_weights(model: torch.nn.Module, seed: int, std: float) -> None:
    """Draws W0 straight into the parameters: in the worker this runs inside the timed window."""
    params = list(model.named_parameters())
    gen = _generator(seed, params[0][1].device)
    for name, p in params:
        _draw(gen, name, p, std)


def read_shard(path: str) -> tuple[np.ndarray, str]:
    """A token shard (flat uint32 .npy, or raw little-endian uint32 .bin) and the sha256 of its file, from one
    read: the hash is of the very bytes the batches are cut from, whatever happens to the file afterwards."""
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if path.endswith(".npy"):
        header = io.BytesIO(data)
        major, _ = np.lib.format.read_magic(header)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(header)
        if len(shape) != 1 or fortran or dtype.kind != "u":
            raise ValueError(f"{path}: expected a flat array of unsigned token ids, got {dtype} of shape {shape}")
        tokens = np.frombuffer(data, dtype=dtype, count=shape[0], offset=header.tell())
    else:
        tokens = np.frombuffer(data, dtype="<u4", count=len(data) // 4)
    return tokens, digest


def make_tokens(seed: int, count: int, batch: int, seq: int, vocab: int,
                shard: np.ndarray | str | None) -> torch.Tensor:
    """`count` batches of (batch, seq) token ids, shape (count, batch, seq). Synthetic when there is no shard:
    uniform ids from a seeded generator. With a shard (read_shard's tokens, or its path), rows start at seeded
    random offsets, so neither the rows nor their order can be known before the seed is."""
    gen = torch.Generator().manual_seed(seed)
    if shard is None:
        return torch.randint(0, vocab, (count, batch, seq), generator=gen, dtype=torch.long)
    if isinstance(shard, str):
        shard = read_shard(shard)[0]
    if shard.shape[0] < seq + 1:
        raise ValueError(f"the token shard holds {shard.shape[0]} tokens, fewer than one row of {seq} needs")
    starts = torch.randint(0, shard.shape[0] - seq, (count * batch,), generator=gen).tolist()
    rows = np.stack([np.asarray(shard[s:s + seq], dtype=np.int64) for s in starts])
    tokens = torch.from_numpy(rows).view(count, batch, seq)
    if int(tokens.max()) >= vocab:
        raise ValueError(f"the token shard holds token id {int(tokens.max())}, outside the model's vocabulary "
                         f"({vocab})")
    return tokens


def make_optimizer(model: torch.nn.Module, opt: dict, **impl) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"],
                             weight_decay=opt["weight_decay"], **impl)


def autocast(device: torch.device, enabled: bool):
    """The profile's precision for a forward pass: bf16 autocast over fp32 master weights (GPUs, and tiny-bf16
    on a CPU), or plain fp32. The harness tells the submission which through CRUSADES_AUTOCAST."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def reference_steps(model, batches: torch.Tensor, optimizer, device: torch.device, bf16: bool):
    """The plain loop every submission is measured against (local_test/train.py is the same loop)."""
    logits = loss = None
    for batch in batches:
        batch = batch.to(device)
        with autocast(device, bf16):
            logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return logits.detach(), float(loss.item())


def peak_flops(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        import platform
        return platform.processor() or platform.machine() or "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((flops for key, flops in PEAK_FLOPS if key in name), None)
