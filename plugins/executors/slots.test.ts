import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { checkConcurrency } from "../../core/config.ts";
import { failedResult, type EvaluationRequest, type Submission } from "../../core/contracts.ts";
import { loadHParams } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import { createPipeline, type ValidatorStatus } from "../../core/pipeline.ts";
import { defineExecutor, defineSource } from "../../core/plugin.ts";
import { Store } from "../../core/storage/store.ts";
import { tinyRequest } from "../../tests/executors/helpers.ts";
import { buildSlots, cpuList, cpuSet, hostDevicesOf, parseGpuList, probeProblem, SlotPool, slotPresent, type Slot } from "./slots.ts";

const SMI = [
  "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa0000-0000-0000-0000-000000000000)",
  "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa0000-0000-0000-0000-000000000001)",
  "GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa0000-0000-0000-0000-000000000002)",
  "GPU 3: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa0000-0000-0000-0000-000000000003)",
].join("\n");
const fourGpus = { gpus: parseGpuList(SMI), cpus: cpuList("0-31") };
const success = (req: EvaluationRequest) => ({ ...failedResult(req, "crash", ""), success: true, error: null, tps: 10 });

describe("slots from options and devices", () => {
  test("cpusets parse and print", () => {
    expect(cpuList("0-3,8,10-11")).toEqual([0, 1, 2, 3, 8, 10, 11]);
    expect(cpuSet([11, 0, 1, 2, 3, 8, 10])).toBe("0-3,8,10-11");
  });

  test("one slot per discovered GPU by default, or equal groups, or named sets", () => {
    expect(buildSlots({ gpus: "all" }, fourGpus).map((s) => [s.id, s.gpus])).toEqual([["gpu:0", ["0"]], ["gpu:1", ["1"]], ["gpu:2", ["2"]], ["gpu:3", ["3"]]]);
    expect(buildSlots({ gpus: "all" }, fourGpus)[0]!.devices).toBe("GPU 0: NVIDIA H100 80GB HBM3");
    expect(buildSlots({ gpus: "all", slots: 2 }, fourGpus).map((s) => s.gpus)).toEqual([["0", "1"], ["2", "3"]]);
    const named = buildSlots({ gpus: "all", slots: [{ gpus: ["GPU-aaaa0000-0000-0000-0000-000000000002"], cpus: "0-7" }, { gpus: ["3"], cpus: "8-15" }] }, fourGpus);
    expect(named.map((s) => [s.id, s.cpus])).toEqual([["gpu:2", "0-7"], ["gpu:3", "8-15"]]);
    expect(buildSlots({ gpus: "all" }, fourGpus, "gpu-2")[1]!.id).toBe("gpu-2/gpu:1");
  });

  test("CPU slots split the online cores into equal disjoint sets", () => {
    expect(buildSlots({ gpus: "none" }, { gpus: null, cpus: [0, 1] }).map((s) => [s.id, s.gpus, s.cpus])).toEqual([["cpu:0-1", null, "0-1"]]);
    expect(buildSlots({ gpus: "none", slots: 2 }, { gpus: null, cpus: [0, 1] }).map((s) => s.cpus)).toEqual(["0", "1"]);
    expect(() => buildSlots({ gpus: "none", slots: 3 }, { gpus: null, cpus: [0, 1] })).toThrow("3 CPU slots need at least 3 cores; 2 are online");
  });

  test("a misconfigured pool is one line naming what is wrong", () => {
    expect(() => buildSlots({ gpus: "all" }, { gpus: null, cpus: [0] })).toThrow('no GPU found: nvidia-smi -L did not run; name the GPUs in gpus, or set gpus: "none" for CPU slots');
    expect(() => buildSlots({ gpus: ["0", "7"] }, fourGpus)).toThrow("GPU 7 is not on this host (nvidia-smi -L lists 0, 1, 2, 3)");
    expect(() => buildSlots({ gpus: "all", slots: 3 }, fourGpus)).toThrow("4 GPUs do not split into 3 equal slots");
    // The same GPU by index and by UUID is still one GPU.
    expect(() => buildSlots({ gpus: "all", slots: [{ gpus: ["0"] }, { gpus: ["GPU-aaaa0000-0000-0000-0000-000000000000"] }] }, fourGpus)).toThrow("GPU 0 is in two slots");
    expect(() => buildSlots({ gpus: "none", slots: [{ cpus: "0-3" }, { cpus: "3-5" }] }, fourGpus)).toThrow("core 3 is in two slots (cpu:0-3 and cpu:3-5)");
    expect(() => buildSlots({ gpus: "none", slots: [{ cpus: "40" }] }, fourGpus)).toThrow("cores 40 are not online");
    expect(() => buildSlots({ gpus: ["0"], slots: [{ gpus: ["1"] }] }, fourGpus)).toThrow("a slot names GPU 1, which is not in gpus");
  });

  test("a remote host's answer to DEVICES_SCRIPT, and whether a slot's devices are still there", () => {
    const found = hostDevicesOf(`${SMI}\nCPUS\n0-31\n`);
    expect(found.gpus!.length).toBe(4);
    expect(found.cpus.length).toBe(32);
    expect(hostDevicesOf("NO-NVIDIA-SMI\nCPUS\n0-1\n")).toEqual({ gpus: null, cpus: [0, 1] });
    const [slot] = buildSlots({ gpus: "all", slots: [{ gpus: ["3"], cpus: "4-5" }] }, found);
    expect(slotPresent(slot!, found)).toBe(true);
    expect(slotPresent(slot!, { ...found, gpus: found.gpus!.slice(0, 3) })).toBe(false);
    expect(slotPresent(slot!, { ...found, cpus: [0, 1, 2, 3, 4] })).toBe(false);
  });

  test("each slot of a host has a worker uid of its own (a uid's process count is host-wide), two apart for the guard", () => {
    const slots = buildSlots({ gpus: "none", slots: 4 }, { gpus: null, cpus: [0, 1, 2, 3] });
    expect(slots.map((s) => s.workerUid)).toEqual([65534, 65532, 65530, 65528]);
    const used = slots.flatMap((s) => [s.workerUid, s.workerUid - 1]);
    expect(new Set(used).size).toBe(used.length);
  });

  test("the start-up probe must see exactly the slot's devices and compute", () => {
    const gpu: Slot = { id: "gpu:1", host: null, gpus: ["1"], cpus: "2-3", devices: "GPU 1", workerUid: 65534 };
    const out = (o: object) => `noise\nCRUSADES-PROBE ${JSON.stringify({ gpus: 1, cpus: [2, 3], matmul: 262144, ...o })}\n`;
    expect(probeProblem(gpu, out({}))).toBeNull();
    expect(probeProblem(gpu, out({ gpus: 8 }))).toBe("the sandbox sees 8 GPU(s), the slot has 1");
    expect(probeProblem(gpu, out({ gpus: 0 }))).toBe("the sandbox sees 0 GPU(s), the slot has 1");
    expect(probeProblem(gpu, out({ cpus: [0, 1, 2, 3] }))).toBe("the sandbox runs on cores 0-3, the slot has 2-3");
    expect(probeProblem(gpu, out({ matmul: 0 }))).toContain("matmul gave 0");
    expect(probeProblem(gpu, "Traceback: RuntimeError: No CUDA GPUs are available\n")).toContain("No CUDA GPUs are available");
  });
});

const cpuSlots = (n: number) => buildSlots({ gpus: "none", slots: n }, { gpus: null, cpus: Array.from({ length: n }, (_, i) => i) });
const ctx = (signal = new AbortController().signal) => ({ log: memoryLogger(), signal });

describe("slot pool", () => {
  test("never more runs than slots, each run on a slot of its own, and the result names its slot", async () => {
    const pool = new SlotPool(cpuSlots(2), { maxFailures: 3, log: memoryLogger() });
    const holding = new Set<string>();
    let peak = 0;
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        pool.evaluate({ ...tinyRequest("x"), run_index: i }, ctx(), () => false, async (slot) => {
          expect(holding.has(slot.id)).toBe(false);
          holding.add(slot.id);
          peak = Math.max(peak, holding.size);
          await Bun.sleep(10);
          holding.delete(slot.id);
          return success({ ...tinyRequest("x"), run_index: i });
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(new Set(results.map((r) => r.diagnostics.slot))).toEqual(new Set(["cpu:0", "cpu:1"]));
    expect(pool.status().map((s) => s.runs)).toEqual([3, 3]);
  });

  test("a free slot where the submission's session is warm is preferred", async () => {
    const pool = new SlotPool(cpuSlots(2), { maxFailures: 3, log: memoryLogger() });
    const r = await pool.evaluate(tinyRequest("x"), ctx(), (s) => s.id === "cpu:1", async (slot) => success(tinyRequest(slot.id)));
    expect(r.diagnostics.slot).toBe("cpu:1");
  });

  test("a slot failing on the validator's side N times in a row leaves with one loud line; a vanished device at once", async () => {
    const log = memoryLogger();
    let gone = false;
    const pool = new SlotPool(cpuSlots(2), { maxFailures: 2, log, present: async (s) => !(gone && s.id === "cpu:1") });
    const req = tinyRequest("x");
    // Each call a run of its own: a run re-run after a fault on our side would be sent to the other slot.
    let runs = 0;
    const onSlot = (id: string) => {
      const r = { ...req, run_index: runs++ };
      return pool.evaluate(r, ctx(), (s) => s.id === id, async (s) => (s.id === "cpu:0" ? failedResult(r, "harness_error", "CUDA error: unspecified launch failure") : success(r)));
    };
    await onSlot("cpu:0");
    // A submission's own failure does not count against the slot, and resets nothing it should not.
    await pool.evaluate({ ...req, run_index: runs++ }, ctx(), (s) => s.id === "cpu:0", async () => failedResult(req, "crash", "its own fault"));
    expect(pool.status()[0]!.failures).toBe(0);
    await onSlot("cpu:0");
    expect(pool.status()[0]!.state).toBe("idle");
    await onSlot("cpu:0");
    const [out] = pool.status();
    expect(out).toMatchObject({ id: "cpu:0", state: "out", failures: 2 });
    expect(out!.reason).toContain("2 runs in a row failed on the validator's side (last: harness_error: CUDA error");
    expect(log.lines.filter((l) => l.includes("SLOT OUT: cpu:0")).length).toBe(1);
    expect(log.lines.find((l) => l.includes("SLOT OUT"))).toContain("1 of 2 slot(s) left");
    // The other slot keeps scoring; runs only go there now.
    for (let i = 0; i < 3; i++) expect((await onSlot("cpu:0")).success).toBe(true);
    // Its device vanishes: out after one validator-side failure, and with no slot left runs fail on our side.
    gone = true;
    await pool.evaluate(req, ctx(), () => false, async () => failedResult(req, "executor_error", "docker: could not select device driver"));
    expect(pool.status()[1]).toMatchObject({ state: "out", reason: "its device vanished (cores 1 is no longer on the host)" });
    expect(log.lines.some((l) => l.includes("no slot left in the executor's pool"))).toBe(true);
    const none = await pool.evaluate(req, ctx(), () => false, async () => success(req));
    expect(none.error?.code).toBe("executor_error");
    expect(none.error?.message).toContain("no slot left");
  });

  test("a device check that cannot reach the host (a dropped connection) counts one failure; it does not take the slot out", async () => {
    const log = memoryLogger();
    const pool = new SlotPool(cpuSlots(1), { maxFailures: 2, log, present: async () => { throw new Error("connection to host:22 dropped"); } });
    const req = tinyRequest("x");
    await pool.evaluate(req, ctx(), () => true, async () => failedResult(req, "executor_error", "connection to host:22 dropped during the run"));
    expect(pool.status()[0]).toMatchObject({ state: "idle", failures: 1, reason: null });
    expect(log.lines.some((l) => l.includes("SLOT OUT"))).toBe(false);
    expect((await pool.evaluate(req, ctx(), () => true, async () => success(req))).success).toBe(true);
  });

  test("a run re-run after a validator-side failure goes to another free slot, though its session is warm on the one that failed", async () => {
    const pool = new SlotPool(cpuSlots(2), { maxFailures: 3, log: memoryLogger() });
    const req = tinyRequest("x");
    const warmOn0 = (s: { id: string }) => s.id === "cpu:0";
    const first = await pool.evaluate(req, ctx(), warmOn0, async () => failedResult(req, "harness_error", "CUDA error: an illegal memory access"));
    expect(first.diagnostics.slot).toBe("cpu:0");
    const again = await pool.evaluate(req, ctx(), warmOn0, async () => success(req));
    expect(again.diagnostics.slot).toBe("cpu:1");
    // Only that run avoids the slot: the submission's next run goes where its session is warm.
    const next = { ...req, run_index: req.run_index + 1 };
    expect((await pool.evaluate(next, ctx(), warmOn0, async () => success(next))).diagnostics.slot).toBe("cpu:0");
    // With no other slot free the re-run still runs, where it can.
    const one = new SlotPool(cpuSlots(1), { maxFailures: 3, log: memoryLogger() });
    await one.evaluate(req, ctx(), () => true, async () => failedResult(req, "executor_error", "engine hiccup"));
    expect((await one.evaluate(req, ctx(), () => true, async () => success(req))).diagnostics.slot).toBe("cpu:0");
  });

  test("a run waiting for a slot gives up when the validator stops", async () => {
    const pool = new SlotPool(cpuSlots(1), { maxFailures: 3, log: memoryLogger() });
    let release = () => {};
    const busy = pool.evaluate(tinyRequest("x"), ctx(), () => false, (s) => new Promise((r) => (release = () => r(success(tinyRequest(s.id))))));
    const ac = new AbortController();
    const waiting = pool.evaluate(tinyRequest("x"), ctx(ac.signal), () => false, async () => success(tinyRequest("x")));
    ac.abort();
    expect((await waiting).error?.code).toBe("cancelled");
    release();
    expect((await busy).success).toBe(true);
    expect(pool.status()[0]!.state).toBe("idle");
  });
});

describe("the pipeline follows the pool", () => {
  let dir: string;
  let store: Store;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "crusades-slots-"));
    store = await Store.open(join(dir, "v.db"));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const hparams = { ...loadHParams(), evaluation_runs: 4, min_success_rate: 0.5 };
  const code = (name: string) => `# ${name}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`;
  const sub = (id: string): Submission => ({ id, hotkey: `hk-${id}`, uid: 1, url: `https://code.example/${id}.py`, revealBlock: 1, source: "scripted" });
  const source = (subs: Submission[]) => defineSource("scripted", z.object({}), () => ({ poll: async () => subs.splice(0) }))();
  const fetchCode = async (url: string) => {
    const body = code(url);
    return { ok: true as const, url, bytes: new TextEncoder().encode(body), sha256: createHash("sha256").update(body).digest("hex") };
  };

  test("one evaluation per live slot at a time; a slot that keeps failing leaves and the other keeps scoring", async () => {
    let running = 0;
    let peak = 0;
    const log = memoryLogger();
    const pooled = defineExecutor("pooled", z.object({}), () => {
      const pool = new SlotPool(cpuSlots(2), { maxFailures: 2, log });
      return {
        slots: () => pool.status(),
        evaluate: (req, c) =>
          pool.evaluate(req, c, () => false, async (slot) => {
            peak = Math.max(peak, ++running);
            await Bun.sleep(5);
            running--;
            // cpu:0 is broken: every run there dies on the validator's side.
            return slot.id === "cpu:0" ? failedResult(req, "harness_error", "the harness exited with code 1 without writing a result document") : success(req);
          }),
      };
    })();
    const p = createPipeline({ store, hparams, profile: "tiny", sources: [source(["a", "b", "c"].map(sub))], executor: pooled, sinks: [], log, fetchCode });
    await p.runUntilIdle();
    expect(peak).toBe(2);
    const status = store.getState<ValidatorStatus>("validator:status")!;
    expect(status.slots!.map((s) => s.state)).toEqual(["out", "idle"]);
    const runs = ["a", "b", "c"].flatMap((id) => store.runs(id));
    // Exactly maxSlotFailures runs reached the broken slot (the pipeline may run a harness_error again).
    expect(status.slots![0]!.runs).toBe(2);
    expect(runs.filter((r) => JSON.parse(r.result_json!).diagnostics.slot === "cpu:0").length).toBeLessThanOrEqual(2);
    // Every submission still scored: the broken slot spoiled two runs at most, then left the pool.
    for (const id of ["a", "b", "c"]) expect(store.submission(id)!.score).toBe(10);
  });

  test("concurrency above the pool's slots is refused with one line; without one, the pool decides", () => {
    const ex = defineExecutor("pooled", z.object({}), () => {
      const pool = new SlotPool(cpuSlots(2), { maxFailures: 2, log: memoryLogger() });
      return { slots: () => pool.status(), evaluate: async (req) => success(req) };
    })();
    expect(() => checkConcurrency(3, ex)).toThrow('concurrency: 3 is more than the 2 slot(s) of executor "pooled" (cpu:0, cpu:1)');
    expect(checkConcurrency(undefined, ex)).toBe(2);
    expect(checkConcurrency(1, ex)).toBe(1);
  });
});
