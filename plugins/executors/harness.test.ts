import { describe, expect, test } from "bun:test";
import { failedResult } from "../../core/contracts.ts";
import { tinyRequest } from "../../tests/executors/helpers.ts";
import { resultOf, wallClockLimitMs } from "./harness.ts";

const request = tinyRequest("def inner_steps(*a):\n    pass\n");
const exited = { kind: "exited" as const, code: 0 };
const good = () => ({ ...failedResult(request, "crash", "x"), success: true, tps: 1234.5, error: null });

describe("harness result handling", () => {
  test("a valid document for this request is the result", () => {
    expect(resultOf(request, exited, JSON.stringify(good()), "").tps).toBe(1234.5);
  });

  test("a document for another request, malformed JSON or a schema violation is invalid_result", () => {
    expect(resultOf(request, exited, JSON.stringify({ ...good(), task_id: "0".repeat(32) }), "").error?.code).toBe("invalid_result");
    expect(resultOf(request, exited, "{not json", "").error?.code).toBe("invalid_result");
    expect(resultOf(request, exited, JSON.stringify({ ...good(), tps: "fast" }), "").error?.message).toContain("tps");
  });

  test("no document says how the harness ended, with the output tail", () => {
    const r = resultOf(request, { kind: "exited", code: null, signal: "SIGKILL" }, null, "Killed");
    expect(r.error).toEqual({ code: "harness_error", message: "the harness was killed by SIGKILL without writing a result document" });
    expect(r.diagnostics.output_tail).toBe("Killed");
  });

  test("limits and transport failures take precedence over any document", () => {
    expect(resultOf(request, { kind: "timeout", limitMs: 5000 }, null, "").error?.message).toContain("5s");
    expect(resultOf(request, { kind: "cancelled" }, null, "").error?.code).toBe("cancelled");
    expect(resultOf(request, { kind: "failed", message: "boom" }, null, "").error).toEqual({ code: "executor_error", message: "boom" });
  });

  test("the wall-clock limit is the request's timeout plus a margin, or the operator's whole limit", () => {
    expect(wallClockLimitMs(request, { marginSeconds: 60 })).toBe((request.benchmark.timeout_seconds + 60) * 1000);
    expect(wallClockLimitMs(request, { marginSeconds: 60, timeoutSeconds: 7 })).toBe(7000);
  });
});
