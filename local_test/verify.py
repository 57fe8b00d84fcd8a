#!/usr/bin/env python3
"""Runs a train.py through exactly the validator's evaluation path and prints what the validator would see.

    python3 local_test/verify.py PATH/train.py [--profile tiny|tiny-bf16|deep-bf16|benchmark] [--runs N] [--json]

Each run builds an evaluation request from hparams/hparams.json the way the validator does (fresh random
seed and task id per run) and hands it to environments/templar/env.py, the validator's harness: one run in
its own process, several through one warm `env.py --serve` (a fresh supervisor and worker per run). Exit status: 0 when every run verified, 1 when any was rejected, 2 on a usage error."""
import argparse
import hashlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_PY = ROOT / "environments" / "templar" / "env.py"
HPARAMS = ROOT / "hparams" / "hparams.json"


PROFILES = ("tiny", "tiny-bf16", "deep-bf16", "benchmark")


def benchmark_settings(hp: dict, profile: str) -> dict:
    """Mirror of core/hparams.ts benchmarkSettings: `benchmark` from the top-level keys, others from profiles."""
    if profile == "benchmark":
        return {"profile": profile, "model_config": hp["benchmark_model_config"],
                "batch_size": hp["benchmark_batch_size"], "sequence_length": hp["benchmark_sequence_length"],
                "eval_steps": hp["eval_steps"], "warmup_steps": hp["warmup_steps"],
                "data_path": hp["benchmark_data_path"], "data_sha256": hp["benchmark_data_sha256"],
                "timeout_seconds": hp["eval_timeout"], "autocast": True}
    return {"profile": profile, **{k: v for k, v in hp["profiles"][profile].items() if k != "verification"}}


def verification_settings(hp: dict, profile: str) -> dict:
    """Mirror of core/hparams.ts verificationSettings: a profile's own tolerances, else the top-level ones."""
    return hp["verification"] if profile == "benchmark" else hp["profiles"][profile].get("verification", hp["verification"])


def model_config_sha256(path: str) -> str:
    """Mirror of core/hparams.ts modelConfigSha256: the request names the config's bytes, not only its path."""
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def build_request(code: str, hp: dict, profile: str = "tiny", run_index: int = 0,
                  submission_id: str = "local", **benchmark_overrides) -> dict:
    bench = {**benchmark_settings(hp, profile), **benchmark_overrides}
    if "model_config_sha256" not in benchmark_overrides:
        bench["model_config_sha256"] = model_config_sha256(bench["model_config"])
    return {
        "schema_version": 1,
        "task_id": secrets.token_hex(16),
        "submission_id": submission_id,
        "run_index": run_index,
        "seed": secrets.token_hex(32),
        "code": code,
        "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
        "benchmark": bench,
        "optimizer": hp["optimizer"],
        "verification": verification_settings(hp, profile),
    }


def run_env(request: dict, workdir: Path, stderr=None) -> dict:
    """One evaluation in a fresh harness process; returns its result document, or one that says why there
    is none. The request goes over stdin: a file would be readable by a worker that keeps our uid."""
    res_path = workdir / f"result-{request['task_id']}.json"
    proc = subprocess.run([sys.executable, str(ENV_PY), "--request", "-", "--result", str(res_path)],
                          input=json.dumps(request).encode(), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        return _checked(json.loads(res_path.read_text()), request)
    except (OSError, ValueError):
        return _no_result(request, f"env.py exited with status {proc.returncode} without a result document")


class WarmHarness:
    """One `env.py --serve` for many runs: the interpreter and imports once, then for each request a fresh
    supervisor and worker forked from it (the validator's process executor does the same)."""

    def __init__(self, workdir: Path, stderr=None):
        self.inbox, self.outbox, self.n = workdir / "in", workdir / "out", 0
        for d in (self.inbox, self.outbox):
            d.mkdir(mode=0o700)
        self.proc = subprocess.Popen([sys.executable, str(ENV_PY), "--serve", str(self.inbox), "--results",
                                      str(self.outbox)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=stderr)

    def wait_ready(self) -> bool:
        """Blocks until the server has done its imports (False if it exited instead)."""
        while not (self.outbox / "ready").exists():
            if self.proc.poll() is not None:
                return False
            time.sleep(0.005)
        return True

    def run(self, request: dict) -> dict:
        n, self.n = self.n, self.n + 1
        tmp = self.inbox / f".request-{n}.json.tmp"
        tmp.write_text(json.dumps(request))
        tmp.chmod(0o600)
        tmp.rename(self.inbox / f"request-{n}.json")
        status = self.outbox / f"status-{n}"
        while not status.exists():
            if self.proc.poll() is not None:
                return _no_result(request, f"the harness server exited with status {self.proc.returncode}")
            time.sleep(0.005)
        try:
            return _checked(json.loads((self.outbox / f"result-{n}.json").read_text()), request)
        except (OSError, ValueError):
            return _no_result(request, f"env.py exited with status {status.read_text()} without a result document")

    def close(self) -> None:
        (self.inbox / "stop").touch()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _checked(doc: dict, request: dict) -> dict:
    if doc.get("diagnostics", {}).get("worker_uid") == 0 and doc.get("diagnostics", {}).get("containment") != "namespaces":
        # As the executors do: a worker left as root outside a user namespace could read anything.
        return _no_result(request, "the harness ran the submission as uid 0 outside a user namespace")
    return doc


def _no_result(request: dict, message: str) -> dict:
    return {"run_index": request["run_index"], "success": False, "tps": 0.0, "mfu": None, "wall_time_seconds": 0.0,
            "total_time_seconds": 0.0, "checks": [], "error": {"code": "harness_error", "message": message}}


def report(doc: dict) -> str:
    lines = [f"run {doc['run_index']}: {'VERIFIED' if doc['success'] else 'REJECTED'}"
             f"  tps {doc['tps']:,.1f}  window {doc['wall_time_seconds']:.3f}s  total {doc['total_time_seconds']:.1f}s"
             + (f"  mfu {doc['mfu']:.1%}" if doc["mfu"] is not None else "")]
    if doc.get("data_sha256"):
        lines.append(f"  token shard sha256 {doc['data_sha256']}")
    cal = doc.get("calibration")
    if cal:
        lines.append(f"  judged with {cal['file']} (honest band of {cal['profile']} on {cal['device_class']})"
                     if cal["calibrated"] else f"  UNCALIBRATED: {cal.get('reason', 'no calibration')}")
    if doc["error"]:
        lines.append(f"  error {doc['error']['code']}: {doc['error']['message']}")
    if doc["checks"]:
        lines.append(f"  {'':6} {'check':<24} {'value':>10}  {'bound':<14} honest loops reach")
    for c in doc["checks"]:
        value = "-" if c["value"] is None else str(int(c["value"])) if float(c["value"]).is_integer() else f"{c['value']:.3g}"
        honest = c.get("honest_max")
        band = "" if honest is None else (f"1 ± {honest:.3g}" if c["name"].endswith("_scale") else f"<= {honest:.3g}")
        lines.append(f"  {'[ok]' if c['passed'] else '[FAIL]':<6} {c['name']:<24} {value:>10}  {c['bound'] or '':<14} {band}"
                     + (f"  ({c['detail']})" if c.get("detail") and not c["passed"] else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="verify a train.py the way validators do")
    parser.add_argument("train_py", type=Path)
    parser.add_argument("--profile", choices=PROFILES, default="tiny")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print only the result document(s)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.runs < 1:
        print("verify.py: --runs must be at least 1", file=sys.stderr)
        return 2
    try:
        code = args.train_py.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"verify.py: cannot read {args.train_py}: {e}", file=sys.stderr)
        return 2
    if not code.strip():
        print(f"verify.py: {args.train_py} is empty", file=sys.stderr)
        return 2
    hp = json.loads(HPARAMS.read_text())
    docs = []
    with tempfile.TemporaryDirectory(prefix="crusades-verify-") as tmp:
        harness = WarmHarness(Path(tmp)) if args.runs > 1 else None
        try:
            for i in range(args.runs):
                request = build_request(code, hp, args.profile, i)
                doc = harness.run(request) if harness else run_env(request, Path(tmp))
                docs.append(doc)
                if not args.json:
                    print(report(doc), flush=True)
        finally:
            if harness:
                harness.close()
    verified = all(d["success"] for d in docs)
    if args.json:
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        ok = [d["tps"] for d in docs if d["success"]]
        median = f"{statistics.median(ok):,.1f}" if ok else "-"
        print(f"\n{len(ok)}/{len(docs)} runs verified; median tps {median}; "
              f"{'VERIFIED' if verified else 'REJECTED'}")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
