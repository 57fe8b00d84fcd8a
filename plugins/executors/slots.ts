// The executor's device pool: slots, each a set of devices no other slot shares (GPUs, CPU cores, on one
// host). A run leases one slot for its whole duration and its sandbox sees only that slot's devices, so
// two evaluations never share a GPU or a core and one run's TPS does not depend on what else runs. A slot
// whose runs keep failing on the validator's side, or whose device vanished, leaves the pool; the others
// keep working. Discovery and the start-up probe's check live here too; how a slot's devices reach a
// sandbox (device request, cpuset, CUDA_VISIBLE_DEVICES, affinity) is each executor's business.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { z } from "zod";
import { failedResult, type ErrorCode, type EvaluationRequest, type EvaluationResult } from "../../core/contracts.ts";
import type { Logger } from "../../core/log.ts";
import type { ExecutorContext, SlotStatus } from "../../core/plugin.ts";

const gpuId = z.string().regex(/^[\w-]+$/, "a GPU index or UUID");
export const CpuSet = z.string().regex(/^\d+(-\d+)?(,\d+(-\d+)?)*$/, "a cpuset such as 0-3 or 0,2,4");

export const GpuSelection = z.union([z.enum(["all", "none"]), z.array(gpuId).min(1)]);
export type GpuSelection = z.infer<typeof GpuSelection>;

const SlotSpec = z
  .object({ gpus: z.array(gpuId).min(1).optional(), cpus: CpuSet.optional() })
  .strict()
  .refine((s) => s.gpus || s.cpus, "a slot names its gpus, its cpus, or both");
export type SlotSpec = z.infer<typeof SlotSpec>;

export const SlotsOption = z.union([z.number().int().positive(), z.array(SlotSpec).min(1)]);

/** Options every executor with a pool shares (spread into its schema). */
export function poolOptions(defaultGpus: "all" | "none") {
  return {
    gpus: GpuSelection.default(defaultGpus).describe(
      'The pool\'s GPUs: "all" (found with nvidia-smi -L), "none" (CPU slots, no GPU visible), or indices/UUIDs such as ["0", "1"].',
    ),
    slots: SlotsOption.optional().describe(
      'Slots (one run each at a time): a number splits the GPUs (or, with gpus "none", the cores) into that many equal disjoint sets; a list names each slot\'s { gpus, cpus }. Default: one slot per GPU, or one slot of every core.',
    ),
    maxSlotFailures: z.number().int().positive().default(3).describe("A slot whose runs end this many times in a row in harness_error or executor_error leaves the pool."),
  };
}
export interface PoolOptions {
  gpus: GpuSelection;
  slots?: number | SlotSpec[];
  maxSlotFailures: number;
}

/** One slot: its GPUs (null: none visible) and its cores (null: not pinned), on `host` (null: this machine). */
export interface Slot {
  id: string;
  host: string | null;
  gpus: string[] | null;
  cpus: string | null;
  devices: string;
  /**
   * The harness's worker uid on this slot. RLIMIT_NPROC counts a uid's processes host-wide, so workers of
   * concurrent slots sharing one uid could take each other's process budget; the uid wall's guard holds
   * workerUid - 1, hence a step of 2.
   */
  workerUid: number;
}

/** The worker uid of a host's first slot (nobody); later slots count down from it by 2. */
export const WORKER_UID = 65534;

export interface Gpu {
  index: string;
  uuid: string;
  name: string;
}

/** `nvidia-smi -L` lines: `GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)`. */
export function parseGpuList(text: string): Gpu[] {
  const gpus: Gpu[] = [];
  for (const line of text.split("\n")) {
    const m = /^GPU (\d+): (.*?) \(UUID: ([\w-]+)\)/.exec(line.trim());
    if (m) gpus.push({ index: m[1]!, name: m[2]!, uuid: m[3]! });
  }
  return gpus;
}

/** The cores of a cpuset (`0-3,8`), sorted and without repeats. */
export function cpuList(set: string): number[] {
  const out = new Set<number>();
  for (const part of set.split(",")) {
    const [a, b = a] = part.split("-").map(Number);
    for (let c = a!; c <= b!; c++) out.add(c);
  }
  return [...out].sort((x, y) => x - y);
}

/** The shortest cpuset naming these cores. */
export function cpuSet(cores: number[]): string {
  const sorted = [...new Set(cores)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** What a host offers: its GPUs (null: nvidia-smi is missing or failed) and its online cores. */
export interface HostDevices {
  gpus: Gpu[] | null;
  cpus: number[];
}

/**
 * Builds the slots of one host from the options and what the host offers. Every failure is one line:
 * devices that are not there, slots that overlap, devices that do not split evenly.
 */
export function buildSlots(opts: Pick<PoolOptions, "gpus" | "slots">, found: HostDevices, host: string | null = null): Slot[] {
  const where = host ? ` on ${host}` : "";
  const prefix = host ? `${host}/` : "";
  const gpuName = (id: string) => found.gpus?.find((g) => g.index === id || g.uuid === id);
  // One id per physical GPU, so ["0"] and ["GPU-…" of GPU 0] are seen to overlap.
  const canonical = (id: string) => gpuName(id)?.index ?? id;
  const checkGpu = (id: string) => {
    if (found.gpus && !gpuName(id)) throw new Error(`GPU ${id} is not on this host${where} (nvidia-smi -L lists ${found.gpus.map((g) => g.index).join(", ") || "none"})`);
  };
  const checkCpus = (set: string) => {
    const missing = cpuList(set).filter((c) => !found.cpus.includes(c));
    if (missing.length) throw new Error(`cores ${cpuSet(missing)} are not online${where} (online: ${cpuSet(found.cpus)})`);
  };
  const make = (gpus: string[] | null, cpus: string | null): Omit<Slot, "workerUid"> => {
    const g = gpus && `GPU${gpus.length > 1 ? "s" : ""} ${gpus.map((id) => (gpuName(id) && gpuName(id)!.index !== id ? `${gpuName(id)!.index} (${id})` : id)).join(",")}`;
    const c = cpus && `cores ${cpus}`;
    const id = `${prefix}${gpus ? `gpu:${gpus.map(canonical).join(",")}` : `cpu:${cpus}`}`;
    return { id, host, gpus, cpus, devices: [g, c].filter(Boolean).join(" + ") + (gpus && gpus.length === 1 && gpuName(gpus[0]!) ? `: ${gpuName(gpus[0]!)!.name}` : "") };
  };

  let slots: Omit<Slot, "workerUid">[];
  if (Array.isArray(opts.slots)) {
    if (opts.gpus === "none" && opts.slots.some((s) => s.gpus)) throw new Error(`slots name GPUs but gpus is "none"${where}`);
    const allowed = Array.isArray(opts.gpus) ? new Set(opts.gpus.map(canonical)) : null;
    slots = opts.slots.map((s) => {
      for (const id of s.gpus ?? []) {
        checkGpu(id);
        if (allowed && !allowed.has(canonical(id))) throw new Error(`a slot names GPU ${id}, which is not in gpus${where}`);
      }
      if (s.cpus) checkCpus(s.cpus);
      return make(s.gpus ?? null, s.cpus ?? null);
    });
  } else if (opts.gpus === "none") {
    const n = opts.slots ?? 1;
    const per = Math.floor(found.cpus.length / n);
    if (per < 1) throw new Error(`${n} CPU slots need at least ${n} cores${where}; ${found.cpus.length} are online`);
    slots = Array.from({ length: n }, (_, i) => make(null, cpuSet(found.cpus.slice(i * per, (i + 1) * per))));
  } else {
    let gpus: string[];
    if (opts.gpus === "all") {
      if (!found.gpus?.length) throw new Error(`no GPU found${where}: nvidia-smi -L ${found.gpus ? "lists none" : "did not run"}; name the GPUs in gpus, or set gpus: "none" for CPU slots`);
      gpus = found.gpus.map((g) => g.index);
    } else {
      opts.gpus.forEach(checkGpu);
      gpus = opts.gpus;
    }
    const n = opts.slots ?? gpus.length;
    if (gpus.length % n !== 0) throw new Error(`${gpus.length} GPUs${where} do not split into ${n} equal slots`);
    const per = gpus.length / n;
    slots = Array.from({ length: n }, (_, i) => make(gpus.slice(i * per, (i + 1) * per), null));
  }
  const owner = new Map<string, string>();
  for (const s of slots) {
    for (const d of [...(s.gpus ?? []).map((g) => `GPU ${canonical(g)}`), ...(s.cpus ? cpuList(s.cpus).map((c) => `core ${c}`) : [])]) {
      const other = owner.get(d);
      if (other) throw new Error(`${d}${where} is in two slots (${other} and ${s.id}); slots must not share a device`);
      owner.set(d, s.id);
    }
  }
  return slots.map((s, i) => ({ ...s, workerUid: WORKER_UID - 2 * i }));
}

const run = (cmd: string, args: string[]) =>
  new Promise<string | null>((resolve) => execFile(cmd, args, { timeout: 30_000 }, (e, stdout) => resolve(e ? null : stdout)));

/** This machine's GPUs (nvidia-smi -L) and online cores. */
export async function localDevices(): Promise<HostDevices> {
  const smi = await run("nvidia-smi", ["-L"]);
  const online = await readFile("/sys/devices/system/cpu/online", "utf8").catch(() => null);
  return { gpus: smi === null ? null : parseGpuList(smi), cpus: online ? cpuList(online.trim()) : Array.from({ length: availableParallelism() }, (_, i) => i) };
}

/** A shell line printing what `hostDevicesOf` reads: the GPU list, a marker, the online cores. */
export const DEVICES_SCRIPT = "nvidia-smi -L 2>/dev/null || echo NO-NVIDIA-SMI; echo CPUS; cat /sys/devices/system/cpu/online";

export function hostDevicesOf(text: string): HostDevices {
  const [gpuPart = "", cpuPart = ""] = text.split(/^CPUS$/m);
  return { gpus: gpuPart.includes("NO-NVIDIA-SMI") ? null : parseGpuList(gpuPart), cpus: cpuList(cpuPart.trim() || "0") };
}

/** Whether every device of the slot is still on its host. */
export function slotPresent(slot: Slot, found: HostDevices): boolean {
  if (slot.cpus && cpuList(slot.cpus).some((c) => !found.cpus.includes(c))) return false;
  if (slot.gpus && found.gpus !== null) return slot.gpus.every((id) => found.gpus!.some((g) => g.index === id || g.uuid === id));
  return slot.gpus === null || found.gpus !== null;
}

// The start-up probe, run in the slot's own sandbox: what devices it sees and whether a matmul runs on
// them. One JSON line after a marker, so whatever else the image prints does not matter.
export const PROBE_MARKER = "CRUSADES-PROBE ";
export const PROBE_SCRIPT = [
  "import json, os, sys, torch",
  "gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0",
  "dev = 'cuda' if int(sys.argv[1]) else 'cpu'",
  "a = torch.ones(64, 64, device=dev)",
  "s = float((a @ a).sum().item())",
  `print(${JSON.stringify(PROBE_MARKER)} + json.dumps({'gpus': gpus, 'cpus': sorted(os.sched_getaffinity(0)), 'matmul': s}), flush=True)`,
].join("\n");
export const probeArgs = (slot: Slot) => ["-c", PROBE_SCRIPT, String(slot.gpus?.length ?? 0)];

/** The probe's output judged against the slot: null when it saw exactly the slot's devices and computed. */
export function probeProblem(slot: Slot, output: string): string | null {
  const line = output.split("\n").find((l) => l.startsWith(PROBE_MARKER));
  if (!line) return `the probe printed no result: ${output.trim().split("\n").slice(-2).join(" ").slice(0, 300) || "no output"}`;
  let seen: { gpus: number; cpus: number[]; matmul: number };
  try {
    seen = JSON.parse(line.slice(PROBE_MARKER.length));
  } catch {
    return "the probe's result is not JSON";
  }
  const want = slot.gpus?.length ?? 0;
  if (seen.gpus !== want) return `the sandbox sees ${seen.gpus} GPU(s), the slot has ${want}`;
  if (slot.cpus && cpuSet(seen.cpus) !== cpuSet(cpuList(slot.cpus))) return `the sandbox runs on cores ${cpuSet(seen.cpus)}, the slot has ${slot.cpus}`;
  if (seen.matmul !== 64 * 64 * 64) return `a 64×64 matmul gave ${seen.matmul}, not ${64 * 64 * 64}`;
  return null;
}

/** Probes every slot at once; the first problem fails the start with one line naming the slot. */
export async function probeAll(slots: Slot[], probe: (slot: Slot) => Promise<string>, log: Logger): Promise<void> {
  const problems = await Promise.all(
    slots.map(async (s) => {
      const problem = await probe(s).then((out) => probeProblem(s, out), (e: Error) => e.message.replace(/\s*\n\s*/g, " "));
      return problem && `slot ${s.id} (${s.devices}) failed its start-up probe: ${problem}`;
    }),
  );
  const first = problems.find(Boolean);
  if (first) throw new Error(first);
  log.info(`${slots.length} slot(s) probed: ${slots.map((s) => s.id).join(", ")}`);
}

/** The validator's side of a failure: these say nothing about the submission, so they count against the slot. */
const SLOT_FAULTS: ReadonlySet<ErrorCode> = new Set(["harness_error", "executor_error"]);

/** Runs whose last failure on our side is remembered; the oldest is forgotten first (a run retried at most once). */
const MAX_FAULTED_RUNS = 1024;
const runKey = (r: EvaluationRequest) => `${r.submission_id}/${r.run_index}`;

interface SlotState {
  slot: Slot;
  busy: { submissionId: string; runIndex: number; startedAt: number } | null;
  failures: number;
  reason: string | null;
  runs: number;
  lastFault: string | null;
}

export interface SlotPoolOptions {
  maxFailures: number;
  log: Logger;
  /** Whether the slot's devices are still there (asked after a validator-side failure). */
  present?(slot: Slot): Promise<boolean>;
}

/**
 * Leases slots to runs, one run per slot, and takes out a slot that keeps failing. A lease waits for a
 * free slot; among free ones it takes one the caller prefers (where the submission's warm session is).
 */
export class SlotPool {
  private readonly states: SlotState[];
  private waiters: { resolve: (s: SlotState | null) => void; submissionId: string; runIndex: number }[] = [];
  /** Run ("submission/run") -> the slot where it last failed on our side: its re-run goes elsewhere if it can. */
  private readonly faulted = new Map<string, string>();

  constructor(
    slots: Slot[],
    private readonly opts: SlotPoolOptions,
  ) {
    this.states = slots.map((slot) => ({ slot, busy: null, failures: 0, reason: null, runs: 0, lastFault: null }));
  }

  get slots(): Slot[] {
    return this.states.map((s) => s.slot);
  }

  status(): SlotStatus[] {
    return this.states.map((s) => ({
      id: s.slot.id,
      host: s.slot.host,
      devices: s.slot.devices,
      state: s.reason ? "out" : s.busy ? "busy" : "idle",
      run: s.busy && { ...s.busy },
      failures: s.failures,
      reason: s.reason,
      runs: s.runs,
    }));
  }

  /**
   * Runs `fn` on a slot leased for the whole run; the result names the slot (diagnostics.slot) and
   * counts for or against it. With no slot left, the run fails on the validator's side.
   */
  async evaluate(request: EvaluationRequest, ctx: ExecutorContext, prefer: (slot: Slot) => boolean, fn: (slot: Slot) => Promise<EvaluationResult>): Promise<EvaluationResult> {
    const state = await this.lease(request, ctx.signal, prefer);
    if (!state) {
      if (ctx.signal.aborted) return failedResult(request, "cancelled", "evaluation cancelled: the validator is shutting down");
      return failedResult(request, "executor_error", "no slot left in the executor's pool: every slot was taken out (see the validator's status)");
    }
    ctx.onSlot?.(state.slot.id);
    let result: EvaluationResult;
    try {
      result = await fn(state.slot);
    } catch (e) {
      result = failedResult(request, "executor_error", (e as Error).message);
    }
    result = { ...result, diagnostics: { ...result.diagnostics, slot: state.slot.id } };
    await this.settle(state, request, result);
    return result;
  }

  private lease(request: EvaluationRequest, signal: AbortSignal, prefer: (slot: Slot) => boolean): Promise<SlotState | null> {
    const run = { submissionId: request.submission_id, runIndex: request.run_index };
    // A run re-run after a failure on our side (the pipeline retries a harness_error once) leaves the slot
    // it failed on when another is free: a warm session there must not send it back to the same fault.
    const avoid = this.faulted.get(runKey(request));
    const free = this.states.filter((s) => !s.busy && !s.reason);
    const elsewhere = free.filter((s) => s.slot.id !== avoid);
    const pick = elsewhere.find((s) => prefer(s.slot)) ?? elsewhere[0] ?? free[0];
    if (pick) {
      pick.busy = { ...run, startedAt: Date.now() };
      return Promise.resolve(pick);
    }
    if (this.states.every((s) => s.reason) || signal.aborted) return Promise.resolve(null);
    return new Promise((resolve) => {
      const waiter = { ...run, resolve: (s: SlotState | null) => (signal.removeEventListener("abort", gone), resolve(s)) };
      const gone = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(null);
      };
      signal.addEventListener("abort", gone, { once: true });
      this.waiters.push(waiter);
    });
  }

  private async settle(state: SlotState, request: EvaluationRequest, result: EvaluationResult) {
    state.runs++;
    const code = result.error?.code;
    this.faulted.delete(runKey(request));
    if (code && SLOT_FAULTS.has(code)) {
      this.faulted.set(runKey(request), state.slot.id);
      if (this.faulted.size > MAX_FAULTED_RUNS) this.faulted.delete(this.faulted.keys().next().value!);
      state.failures++;
      state.lastFault = `${code}: ${result.error!.message.split("\n")[0]!.slice(0, 200)}`;
      // A check that cannot run (the host unreachable after a dropped connection) proves nothing about the
      // device: the failure counts, and the slot leaves only when the failures in a row do.
      const vanished = this.opts.present ? !(await this.opts.present(state.slot).catch(() => true)) : false;
      if (vanished) this.out(state, `its device vanished (${state.slot.devices} is no longer on the host)`);
      else if (state.failures >= this.opts.maxFailures) this.out(state, `${state.failures} runs in a row failed on the validator's side (last: ${state.lastFault})`);
    } else if (code !== "cancelled") {
      state.failures = 0;
    }
    state.busy = null;
    this.handOn(state);
  }

  private out(state: SlotState, reason: string) {
    state.reason = reason;
    const left = this.states.filter((s) => !s.reason).length;
    this.opts.log.error(`SLOT OUT: ${state.slot.id} (${state.slot.devices}) is taken out of the pool: ${reason}; ${left} of ${this.states.length} slot(s) left`);
    if (left === 0) {
      this.opts.log.error("no slot left in the executor's pool: evaluations stop until the devices are fixed and the validator restarted");
      for (const w of this.waiters.splice(0)) w.resolve(null);
    }
  }

  private handOn(state: SlotState) {
    if (state.reason) return;
    const next = this.waiters.shift();
    if (!next) return;
    state.busy = { submissionId: next.submissionId, runIndex: next.runIndex, startedAt: Date.now() };
    next.resolve(state);
  }
}
