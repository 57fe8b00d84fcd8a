"""Every known way to fool the measurement, each rejected with its own code and never scored.
All fixtures are evaluated once per session, two harness processes at a time."""
import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from conftest import HPARAMS, build_request, evaluate_many, fork_harness, read_code, run_harness

EXPECTED = {
    "skip_backward_last": "optimizer_state",  # one step fewer on the optimizer's count
    "freeze_restore": "optimizer_state",
    "truncate_sequence": "logits_shape",
    "inflate_tokens": "token_count",
    "fake_logits": "logits_mismatch",
    "wrong_vocab_logits": "logits_shape",
    "cached_warmup": "optimizer_state",
    "deferred_thread": "optimizer_state",  # the thread's work is not there when the sketches are taken
    "deferred_raw_thread": "optimizer_state",
    "patch_cross_entropy": "frozen_params",
    "patch_tensor_op": "optimizer_state",
    "patch_math": "crash",
    "forge_pipe": "tampering",
    "print_forged": "optimizer_state",
    "exit_early": "crash",
    "raises": "crash",
    "nan_weights": "non_finite",
    "syntax_error": "syntax_error",
    "import_error": "import_error",
    "missing_inner_steps": "missing_inner_steps",
    "bad_signature": "bad_signature",
    "bad_return": "bad_return",
}
# Once verification no longer shares an interpreter with the clock or the arithmetic, these patches reach
# nothing, and a lazy result is computed on the clock: what they train is judged, and it is honest.
HARMLESS = ["patch_time", "patch_cuda_sync", "lazy_attributes"]


@pytest.fixture(scope="module")
def results():
    with tempfile.TemporaryDirectory(prefix="crusades-cheats-") as d:
        docs = evaluate_many(sorted(EXPECTED) + HARMLESS, Path(d))
        docs.update(evaluate_many(["infinite_loop"], Path(d), timeout_seconds=25))
        yield docs


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rejected_with_its_code(results, name):
    doc = results[name]
    assert doc["error"] is not None, f"{name} was accepted: {json.dumps(doc)[:800]}"
    assert doc["error"]["code"] == EXPECTED[name], doc["error"]["message"]
    assert doc["success"] is False and doc["tps"] == 0 and doc["total_tokens"] == 0 and doc["mfu"] is None
    assert doc["error"]["message"].strip()


@pytest.mark.parametrize("name", HARMLESS)
def test_patches_that_reach_nothing_are_judged_by_their_training(results, name):
    assert results[name]["success"], results[name]["error"]


def test_infinite_loop_is_killed_at_the_timeout(results):
    doc = results["infinite_loop"]
    assert doc["error"]["code"] == "timeout" and doc["tps"] == 0
    assert "25s" in doc["error"]["message"]


def test_printed_result_is_ignored(results):
    doc = results["print_forged"]
    assert doc["error"]["code"] == EXPECTED["print_forged"] and doc["tps"] == 0
    assert "EVAL_RESULT" in doc["diagnostics"]["worker_log_tail"]  # it was printed, and only logged


def test_writing_the_result_location_is_caught(workdir):
    # Through the real command line: the cheat reads --result from the supervisor's /proc cmdline.
    request = build_request(read_code("write_result"), HPARAMS, submission_id="write_result")
    status, doc, _ = run_harness(request, workdir)
    assert status == 0 and "forged" not in doc and doc["task_id"] == request["task_id"]
    # A worker under its own uid, or behind a private /tmp, cannot even open the file (it crashes); one that
    # reaches it is caught afterwards.
    assert doc["error"]["code"] in ("crash", "tampering") and doc["tps"] == 0 and not doc["success"]


def test_checks_name_value_and_bound(results):
    doc = results["skip_backward_last"]
    by_name = {c["name"]: c for c in doc["checks"]}
    scale = by_name["update_scale"]  # one skipped step of ten: about a tenth of the update missing
    assert not scale["passed"] and 0.8 < scale["value"] < 0.98 and scale["bound"].startswith("1 ± ")
    assert not by_name["exp_avg_rel_global"]["passed"] and by_name["exp_avg_rel_global"]["value"] > 0.2
    assert doc["error"]["message"].startswith("optimizer_state failed")
    assert by_name["token_count"]["passed"] and by_name["loss_abs_diff"]["passed"]


def test_escaped_daemon_does_not_outlive_the_evaluation(workdir):
    shared = workdir / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # reachable by a worker under its own uid
    marker = shared / "marker"
    code = read_code("escape_daemon").replace("MARKER_PATH", str(marker))
    request = build_request(code, HPARAMS, submission_id="escape_daemon")
    pid, res, _ = fork_harness(request, workdir)
    os.waitpid(pid, 0)
    doc = json.loads(res.read_text())
    # It trained honestly, so it may well verify; what matters is that its daemon was found and killed.
    assert doc["error"] is None or doc["error"]["code"] != "harness_error", doc["error"]
    time.sleep(4)
    assert not marker.exists(), "a process started by the submission survived the evaluation"
