"""In-process unit tests for the pieces both sides share (seeded inputs) and the verification arithmetic."""
import math
import os

import numpy as np
import pytest
import torch

import checks
import handover as handover_mod
import sketch
import workload
from conftest import HPARAMS, ROOT

TINY = HPARAMS["profiles"]["tiny"]
TOL = HPARAMS["profiles"]["tiny"]["verification"]


@pytest.fixture(scope="module")
def config():
    torch.set_num_threads(1)
    return workload.load_config(str(ROOT / TINY["model_config"]))


def test_seeded_init_is_reproducible_and_seed_dependent(config):
    cpu = torch.device("cpu")
    a, b = workload.build_model(config, cpu), workload.build_model(config, cpu)
    workload.init_weights(a, 7, config.initializer_range)
    workload.init_weights(b, 7, config.initializer_range)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    workload.init_weights(b, 8, config.initializer_range)
    assert not torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    norms = [p for n, p in a.named_parameters() if n.endswith("norm.weight")]
    assert norms and all(torch.all(p == 1) for p in norms)
    # W0's rule: the MLP at half the attention's scale (a well-conditioned problem, see workload.W0_RULE)
    std = {n: float(p.detach().std()) for n, p in a.named_parameters() if p.ndim == 2}
    mlp = [v for n, v in std.items() if ".mlp." in n]
    attention = [v for n, v in std.items() if ".self_attn." in n]
    assert mlp and attention and all(abs(v / config.initializer_range - 0.5) < 0.05 for v in mlp)
    assert all(abs(v / config.initializer_range - 1) < 0.1 for v in attention)


def test_derived_seeds_separate_purposes():
    seed = "ab" * 32
    assert workload.derive_seed(seed, "timed-init") == workload.derive_seed(seed, "timed-init")
    assert workload.derive_seed(seed, "timed-init") != workload.derive_seed(seed, "warmup-init")
    assert workload.derive_seed(seed, "timed-init") != workload.derive_seed("cd" * 32, "timed-init")


def test_tokens_from_a_shard_follow_the_seed(tmp_path):
    shard = tmp_path / "tokens.npy"
    np.save(shard, np.arange(10_000, dtype=np.uint32) % 500)
    a = workload.make_tokens(1, 3, 2, 16, 512, str(shard))
    assert a.shape == (3, 2, 16) and a.dtype == torch.long
    assert torch.equal(a, workload.make_tokens(1, 3, 2, 16, 512, str(shard)))
    assert not torch.equal(a, workload.make_tokens(2, 3, 2, 16, 512, str(shard)))
    assert torch.all((a[..., 1:] - a[..., :-1]) % 500 == 1)  # rows are contiguous windows of the shard
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        workload.make_tokens(1, 3, 2, 16, 100, str(shard))


def test_unknown_architecture_is_refused(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"architectures": ["EvilForCausalLM"], "model_type": "qwen2"}')
    with pytest.raises(ValueError, match="not in"):
        workload.load_config(str(cfg))


def test_benchmark_config_is_qwen2_5_3b():
    config = workload.load_config(str(ROOT / HPARAMS["benchmark_model_config"]))
    with torch.device("meta"):
        model = workload.model_class(config)(config)
    assert 3.0e9 < sum(p.numel() for p in model.parameters()) < 3.2e9
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (2048, 36, 151936)


STEPS, SHAPE = 4, (2, 15)


def _run(config, key=11):
    """The reference's own path on a small input: S(W0), training, sketches of everything."""
    cpu = torch.device("cpu")
    layout = workload.param_layout(config)
    logits_shape = (*SHAPE, config.vocab_size)
    model = workload.build_model(config, cpu)
    workload.init_weights(model, 3, config.initializer_range)
    opt = workload.make_optimizer(model, HPARAMS["optimizer"])
    total = sketch.slots(layout, logits_shape)[1]
    w0, out = torch.zeros(total), torch.zeros(total)
    sketch.collect(model, opt, None, layout, logits_shape, key, w0)
    tokens = workload.make_tokens(9, STEPS, SHAPE[0], SHAPE[1] + 1, config.vocab_size, None)
    logits, loss = workload.reference_steps(model, tokens, opt, cpu, False)
    sketch.collect(model, opt, logits, layout, logits_shape, key, out)
    return layout, logits_shape, w0, out, loss


_REF = object()


def _verify(config, edit=None, tokens=None, loss=_REF):
    layout, logits_shape, w0, out, ref_loss = _run(config)
    cand = out.clone()
    if edit:
        edit(sketch.split(cand, layout, logits_shape))
    reported = {"total_tokens": STEPS * SHAPE[0] * (SHAPE[1] + 1) if tokens is None else tokens,
                "final_loss": ref_loss if loss is _REF else loss, "logits_shape": list(logits_shape)}
    return checks.verify(expected_tokens=STEPS * SHAPE[0] * (SHAPE[1] + 1), expected_steps=STEPS,
                         logits_shape=logits_shape, reported=reported,
                         cand=checks.candidate_sketches(cand, w0, layout, logits_shape),
                         ref=checks.reference_sketches(out, w0, layout, logits_shape, ref_loss), tol=TOL,
                         layout=layout)


def test_a_sketch_estimates_the_norm_and_depends_on_the_key():
    x = torch.randn(512, 64)
    a, b = sketch.of(x, sketch.Projector(1, torch.device("cpu"))), sketch.of(x, sketch.Projector(1, torch.device("cpu")))
    assert torch.equal(a, b) and a.numel() == 512 * sketch.K
    assert abs(float(a.norm() / x.norm()) - 1) < 0.1
    assert not torch.equal(a, sketch.of(x, sketch.Projector(2, torch.device("cpu"))))
    assert torch.equal(sketch.of(x[0], sketch.Projector(1, torch.device("cpu"))), x[0])  # 1-D: taken whole


def test_the_handover_is_sealed_and_read_as_a_snapshot(config):
    layout, shape = workload.param_layout(config), (*SHAPE, config.vocab_size)
    fd = handover_mod.new_fd()
    try:
        nbytes = handover_mod.seal(fd, layout, shape)
        side = handover_mod.WorkerBuffer(fd, layout, shape)
        side.flat[:3] = torch.tensor([1.0, 2.0, 3.0])
        snap = handover_mod.snapshot(fd, nbytes)
        side.flat[:3] = 0  # later writes change nothing already taken
        assert snap[:3].tolist() == [1.0, 2.0, 3.0] and snap.numel() * 4 == nbytes
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, nbytes * 2)
    finally:
        os.close(fd)


def test_identical_sketches_pass(config):
    result_checks, error, _ = _verify(config)
    assert error is None and all(c["passed"] for c in result_checks), error


def test_each_kind_of_evidence_names_its_error(config):
    def scale(kind, f):
        return lambda s: [t.mul_(f) for t in s[kind].values()]
    _, error, _ = _verify(config, scale("exp_avg", 0.9))
    assert error["code"] == "optimizer_mismatch" and error["message"].startswith("exp_avg_scale")
    _, error, _ = _verify(config, scale("exp_avg_sq", 1.1))
    assert error["code"] == "optimizer_mismatch" and error["message"].startswith("exp_avg_sq_scale")


def test_the_update_is_measured_on_the_update_not_the_weights(config):
    layout, logits_shape, w0, out, _ = _run(config)
    w0s = sketch.split(w0, layout, logits_shape)["w"]

    def back_ten_percent(s):  # final weights 10% of the way back to W0: a tiny change of W
        for n, t in s["w"].items():
            t.sub_(0.1 * (t - w0s[n]))
    result_checks, error, _ = _verify(config, back_ten_percent)
    glob = next(c for c in result_checks if c["name"] == "update_rel_global")
    assert math.isclose(glob["value"], 0.1, rel_tol=1e-3) and error["code"] == "weights_mismatch"


def test_codes_by_priority(config):
    layout, logits_shape, w0, _, _ = _run(config)
    w0s = sketch.split(w0, layout, logits_shape)["w"]
    name = "model.layers.1.mlp.up_proj.weight"
    _, error, _ = _verify(config, lambda s: s["w"][name].copy_(w0s[name]))
    assert error["code"] == "frozen_params" and "up_proj" in error["message"]
    _, error, _ = _verify(config, lambda s: s["step"].sub_(1))
    assert error["code"] == "optimizer_state" and "copy its state" in error["message"]
    _, error, _ = _verify(config, tokens=999)
    assert error["code"] == "token_count"
    _, error, _ = _verify(config, loss=None)
    assert error["code"] == "non_finite"
    result_checks, error, _ = _verify(config, lambda s: s["logits"].fill_(float("nan")))
    assert error["code"] == "non_finite"
    assert all(c["value"] is None or math.isfinite(c["value"]) for c in result_checks)
    _, error, _ = _verify(config, loss=1e3)
    assert error["code"] == "loss_mismatch"
    _, error, _ = _verify(config, lambda s: s["logits"].mul_(1.5))
    assert error["code"] == "logits_mismatch"
