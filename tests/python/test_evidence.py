"""The evidence sees every step and the declared precision: honest loops in every usual shape, in the
profile's precision or better, verify on both CPU profiles; every gradient shortcut that leans on AdamW's
momentum and every loop that computes in lower precision than the profile declares (fp8 GEMMs, fp8
optimizer state) is rejected. Both profiles are judged with their shipped calibrations
(environments/templar/calibration/<profile>.cpu.json)."""
import tempfile
from pathlib import Path

import pytest

from conftest import FIXTURES, HPARAMS, build_request, evaluate_requests, read_code

HONEST = ["template", "honest_fast", "h:foreach", "h:fused", "h:chunked_ce", "h:microbatch", "h:eager_attn",
          "h:math_sdpa", "h:namedtuple", "h:typed_namedtuple", "h:simplenamespace", "h:plain_class",
          "h:slots_dataclass", "h:mapping", "h:tensor_loss", "h:torch_save", "h:checkpoint", "h:fp32", "p:bf16_manual"]
COMPILED = ["h:compile", "h:compile_autotune"]
SHORTCUTS = ["zero_last", "reuse_last", "mhat_last", "zero_last2", "lr110", "lr125", "rows_half", "positions_3q",
             "head_quarter", "reuse_alternate"]
# Lower precision than the profile declares (tests/fixtures/train/precision_shortcuts.py).
FP8 = ["fp8_wgrad", "fp8_wgrad_e5m2", "fp8_dgrad_wgrad", "fp8_all_from2", "fp8_adam_state"]
# fp8 in one kind of matrix (the MLP's GEMMs) or in one layer: the matrix_noise statistic's (1.8-2.5x its bound
# on tiny-bf16). The tied head's alone is left to bench/separation.py: rejected there, but at 1.06-1.26x.
FP8_PART = ["fp8_wgrad_mlp", "fp8_wgrad_layer"]
EVIDENCE_CODES = {"weights_mismatch", "optimizer_mismatch"}
# The statistic that must separate every shortcut from every honest loop.
SEPARATING = "exp_avg_rel_global"


def code_of(name: str) -> str:
    kind, _, mode = name.partition(":")
    if kind == "h":
        return (FIXTURES / "honest_variants.py").read_text().replace("VARIANT_NAME", mode)
    if kind == "c":
        return (FIXTURES / "gradient_shortcuts.py").read_text().replace("MODE_NAME", mode)
    if kind == "p":
        return (FIXTURES / "precision_shortcuts.py").read_text().replace("MODE_NAME", mode)
    return read_code(name)


@pytest.fixture(scope="module", params=["tiny", "tiny-bf16"])
def profile_results(request):
    profile = request.param
    names = HONEST + COMPILED + [f"c:{m}" for m in SHORTCUTS] + ["c:bf16_master"] + [f"p:{m}" for m in FP8 + FP8_PART]
    with tempfile.TemporaryDirectory(prefix="crusades-evidence-") as d:
        # Compiling is not what is judged: on a loaded shared CPU it can take longer than the profile's limit.
        reqs = {n: build_request(code_of(n), HPARAMS, profile, submission_id=n.replace(":", "-"),
                                 **({"timeout_seconds": 900} if n in COMPILED else {})) for n in names}
        yield profile, evaluate_requests(reqs, Path(d))


def _value(doc, check):
    return next(c["value"] for c in doc["checks"] if c["name"] == check)


def test_honest_variants_verify(profile_results):
    profile, docs = profile_results
    rejected = {n: docs[n]["error"] for n in HONEST + COMPILED if not docs[n]["success"]}
    assert not rejected, f"{profile}: honest loops rejected: {rejected}"


def test_gradient_shortcuts_are_rejected_by_the_evidence(profile_results):
    profile, docs = profile_results
    for mode in SHORTCUTS:
        doc = docs[f"c:{mode}"]
        assert not doc["success"] and doc["tps"] == 0, f"{profile}: {mode} verified"
        assert doc["error"]["code"] in EVIDENCE_CODES, (mode, doc["error"])
    assert docs["c:bf16_master"]["error"]["code"] in EVIDENCE_CODES | {"frozen_params"}


def test_every_fp8_family_is_rejected(profile_results):
    profile, docs = profile_results
    for mode in FP8 + FP8_PART:
        doc = docs[f"p:{mode}"]
        assert not doc["success"] and doc["error"]["code"] in EVIDENCE_CODES, (profile, mode, doc["error"])
        assert "or better reach on this device" in doc["error"]["message"]  # the rule, stated where it bites


def test_judged_with_the_shipped_calibration(profile_results):
    profile, docs = profile_results
    for name in HONEST:
        assert docs[name]["calibration"] == {**docs[name]["calibration"], "profile": profile, "device_class": "cpu",
                                             "calibrated": True, "file": f"calibration/{profile}.cpu.json"}
        assert all("honest_max" in c for c in docs[name]["checks"] if c["name"].startswith(("update_", "exp_avg")))


def test_every_shortcut_is_far_outside_the_honest_band(profile_results):
    profile, docs = profile_results
    band = max(_value(docs[n], SEPARATING) for n in HONEST + COMPILED)
    weakest = min((_value(docs[f"c:{m}"], SEPARATING), m) for m in SHORTCUTS)
    bound = next(c["bound"] for c in docs["template"]["checks"] if c["name"] == SEPARATING)
    assert band <= float(bound.split()[-1]) <= weakest[0] / 3, (profile, band, bound, weakest)


# At depth the band is the problem's conditioning times bf16's rounding, while an fp8 GEMM's error is fp8's own:
# on the 12-layer lab profile, with the MLP drawn at the attention's scale, the widest honest loops (fp32, eager
# attention) reached as far from the reference as fp8 weight gradients and fp8 AdamW state, and fp8 in the MLP
# alone hid under the statistic over every tensor (README, deep-bf16).
DEEP_HONEST = ["h:fp32", "h:eager_attn", "h:math_sdpa"]
DEEP_FP8 = FP8 + ["fp8_wgrad_mlp"]


@pytest.fixture(scope="module")
def deep_results():
    names = DEEP_HONEST + [f"p:{m}" for m in DEEP_FP8]
    with tempfile.TemporaryDirectory(prefix="crusades-evidence-deep-") as d:
        reqs = {n: build_request(code_of(n), HPARAMS, "deep-bf16", submission_id=n.replace(":", "-")) for n in names}
        yield evaluate_requests(reqs, Path(d))


def test_every_fp8_family_is_rejected_at_depth(deep_results):
    for name in DEEP_HONEST:
        assert deep_results[name]["success"], (name, deep_results[name]["error"])
        assert deep_results[name]["calibration"]["calibrated"], deep_results[name]["calibration"]
    for mode in DEEP_FP8:
        doc = deep_results[f"p:{mode}"]
        assert not doc["success"] and doc["error"]["code"] in EVIDENCE_CODES, (mode, doc["error"])
