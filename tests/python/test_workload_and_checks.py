"""In-process unit tests for the pieces both sides share (seeded inputs) and the verification arithmetic."""
import math

import numpy as np
import pytest
import torch

import checks
import workload
from conftest import HPARAMS, ROOT

TINY = HPARAMS["profiles"]["tiny"]
TOL = HPARAMS["verification"]


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


def _train(config, skip_last=False, frozen=None):
    cpu = torch.device("cpu")
    model = workload.build_model(config, cpu)
    workload.init_weights(model, 3, config.initializer_range)
    if frozen:
        dict(model.named_parameters())[frozen].requires_grad_(False)
    tokens = workload.make_tokens(4, 4, 2, 16, config.vocab_size, None)
    opt = workload.make_optimizer(model, HPARAMS["optimizer"])
    logits, loss = workload.reference_steps(model, tokens[:-1] if skip_last else tokens, opt, cpu)
    layout = workload.param_layout(config)
    return {"logits": logits, "loss": loss,
            "deltas": dict(workload.updates(model, layout, 3, config.initializer_range))}


def _cand(ref, logits=None, deltas=None):
    logits = ref["logits"] if logits is None else logits
    return {"logits_shape": tuple(logits.shape), "logits": logits, "deltas": ref["deltas"] if deltas is None else deltas}


def _verify(ref, cand, tokens=2 * 16 * 4, loss=None):
    reported = {"total_tokens": tokens, "final_loss": ref["loss"] if loss is None else loss}
    return checks.verify(expected_tokens=2 * 16 * 4, logits_shape=tuple(ref["logits"].shape), reported=reported,
                         cand=cand, ref=ref, tol=TOL, device=torch.device("cpu"))


def test_updates_are_w_minus_a_redrawn_w0(config):
    model = workload.build_model(config, torch.device("cpu"))
    workload.init_weights(model, 5, config.initializer_range)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.model.norm.weight.add_(0.5)
    layout = workload.param_layout(config)
    deltas = dict(workload.updates(model, layout, 5, config.initializer_range))
    assert [n for n, _ in layout] == list(w0) and list(deltas) == list(w0)
    assert torch.all(deltas["model.norm.weight"] == 0.5)
    assert all(torch.count_nonzero(d) == 0 for n, d in deltas.items() if n != "model.norm.weight")
    model.model.layers[0].mlp.up_proj.weight = torch.nn.Parameter(torch.zeros(3, 3))  # reshaped by a submission
    deltas = dict(workload.updates(model, layout, 5, config.initializer_range))
    assert deltas["model.layers.0.mlp.up_proj.weight"] is None


def test_handover_round_trips_in_bf16_and_refuses_wrong_shapes(config):
    import handover as handover_mod
    layout = workload.param_layout(config)
    fd = handover_mod.new_fd()
    box = handover_mod.Handover(layout, (2, 15, config.vocab_size), fd)
    other = handover_mod.Handover(layout, (2, 15, config.vocab_size), fd)  # the worker's side: same pages
    assert box.nbytes >= 2 * (sum(math.prod(s) for _, s in layout) + 2 * 15 * config.vocab_size)
    name, shape = layout[1]
    value = torch.randn(shape) * 1e-4
    assert box.put(name, value) and not box.put(name, torch.zeros(3)) and not box.put("nope", value)
    assert box.put(None, torch.ones(2, 15, config.vocab_size))
    got = box.view(name).float()
    assert torch.allclose(got, value, rtol=2 ** -8, atol=0) and not torch.equal(got, value)
    assert torch.all(box.view(None) == 1) and torch.count_nonzero(box.view(layout[0][0])) == 0
    assert torch.equal(other.view(name), box.view(name)) and box.nbytes == handover_mod.size_of(layout, (2, 15, config.vocab_size))


def test_identical_outputs_pass_and_a_skipped_step_does_not(config):
    ref = _train(config)
    result_checks, error, _ = _verify(ref, _cand(ref))
    assert error is None and all(c["passed"] for c in result_checks)
    skipped = _train(config, skip_last=True)
    _, error, _ = _verify(ref, _cand(ref, deltas=skipped["deltas"]))
    assert error["code"] == "weights_mismatch"


def test_update_error_is_measured_on_the_update_not_the_weights(config):
    ref = _train(config)
    # Final weights 10% of the way back towards W0: a 0.03% change of W, a 10% error of the update.
    deltas = {n: 0.9 * d for n, d in ref["deltas"].items()}
    result_checks, error, _ = _verify(ref, _cand(ref, deltas=deltas))
    glob = next(c for c in result_checks if c["name"] == "update_rel_error_global")
    assert math.isclose(glob["value"], 0.1, rel_tol=1e-3) and error["code"] == "weights_mismatch"


def test_frozen_tensor_and_codes_by_priority(config):
    ref = _train(config)
    frozen = _train(config, frozen="model.layers.1.mlp.up_proj.weight")
    _, error, _ = _verify(ref, _cand(ref, deltas=frozen["deltas"]))
    assert error["code"] == "frozen_params" and "up_proj" in error["message"]
    _, error, _ = _verify(ref, _cand(ref), tokens=999)
    assert error["code"] == "token_count"
    _, error, _ = _verify(ref, _cand(ref), loss=float("nan"))
    assert error["code"] == "non_finite"
    _, error, _ = _verify(ref, _cand(ref), loss=ref["loss"] + 1.0)
    assert error["code"] == "loss_mismatch"
    _, error, _ = _verify(ref, _cand(ref, logits=ref["logits"] * 1.5))
    assert error["code"] == "logits_mismatch"
    missing = {n: d for n, d in ref["deltas"].items() if "layers.0" not in n}
    result_checks, error, _ = _verify(ref, _cand(ref, deltas=missing))
    assert error["code"] == "weights_mismatch" and "missing or reshaped" in error["message"]
    assert all(c["value"] is None or math.isfinite(c["value"]) for c in result_checks)
