"""Honest submissions: the template verifies, and a genuinely faster loop verifies with a higher TPS."""
import json
import statistics
import subprocess
import sys

from conftest import HPARAMS, ROOT, build_request, evaluate, read_code, run_harness


def test_template_verified_through_verify_cli():
    proc = subprocess.run([sys.executable, str(ROOT / "local_test" / "verify.py"), str(ROOT / "local_test" / "train.py"),
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["success"] and doc["error"] is None and doc["tps"] > 0
    assert doc["total_tokens"] == 2 * 64 * 10
    assert abs(doc["tps"] - doc["total_tokens"] / doc["wall_time_seconds"]) < 1e-6 * doc["tps"]
    assert doc["total_time_seconds"] > doc["wall_time_seconds"] > 0
    assert all(c["passed"] for c in doc["checks"]) and len(doc["checks"]) == 19  # with the three noise statistics
    assert doc["calibration"]["calibrated"] and doc["calibration"]["file"] == "calibration/tiny.cpu.json"
    assert doc["diagnostics"]["reference_loss"] == doc["diagnostics"]["candidate_loss"]


def test_faster_honest_variant_scores_higher(workdir):
    # Compared pair by pair, back to back and in alternating order: this machine's speed drifts by up to
    # 1.5x within minutes, so a best-of-N across the whole test lets one fast spell decide; the speed-up is
    # ~1.2x within a pair.
    ratios = []
    for i in range(5):
        order = ("template", "honest_fast") if i % 2 == 0 else ("honest_fast", "template")
        tps = {}
        for name in order:
            doc = evaluate(name, workdir, parallel=1)
            assert doc["success"], doc["error"]
            tps[name] = doc["tps"]
        ratios.append(tps["honest_fast"] / tps["template"])
    assert statistics.median(ratios) > 1, ratios


def test_verify_cli_exit_codes(tmp_path):
    verify = [sys.executable, str(ROOT / "local_test" / "verify.py")]
    assert subprocess.run(verify + [str(tmp_path / "missing.py")], capture_output=True).returncode == 2
    assert subprocess.run(verify + ["x.py", "--profile", "huge"], capture_output=True).returncode == 2
    proc = subprocess.run(verify + [str(ROOT / "tests" / "fixtures" / "train" / "syntax_error.py")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "REJECTED" in proc.stdout and "syntax_error" in proc.stdout


def test_the_seed_is_not_in_the_workers_memory(workdir):
    # The fixture searches its own process memory for the request seed and crashes if it finds it. Through
    # the command line: the forked harnesses of the other tests inherit this process, which built the seed.
    status, doc, stderr = run_harness(build_request(read_code("seed_from_memory"), HPARAMS, "tiny"), workdir)
    assert status == 0 and doc["success"], (doc or {}).get("error") or stderr[-2000:]
    assert "none is the request's" in doc["diagnostics"]["worker_log_tail"]
