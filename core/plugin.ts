// The three plugin kinds. A plugin is a plain object with a kind, a name, the options it was built with
// and its functions; factories validate options with a zod schema so a bad config names the field.
import { z } from "zod";
import type { EvaluationRequest, EvaluationResult, Submission } from "./contracts.ts";
import { formatZodError, UserError } from "./errors.ts";
import type { Logger } from "./log.ts";

/** Key/value state a plugin keeps across restarts (cursor block, ETags, …), namespaced by plugin name. */
export interface PluginState {
  get<T>(key: string): T | undefined;
  set(key: string, value: unknown): void;
}

export interface Rejection {
  hotkey: string | null;
  reason: string;
  detail: string;
  /** What was received, for the record (truncated by the store). */
  raw: string;
  block: number | null;
}

export interface SourceContext {
  state: PluginState;
  log: Logger;
  signal: AbortSignal;
  /** Records something the source refused (malformed commitment, rate limit…); never throws. */
  reject(rejection: Rejection): void;
  /** Whether a submission id is already known, so sources can skip re-yielding. */
  known(id: string): boolean;
  /**
   * Hands one submission to the core now: it is stored before this returns, so a long poll that fails or
   * is killed halfway keeps what it found. Same rules as a returned one (validated, a known id ignored).
   */
  submit(submission: Submission): void;
}

export interface Source {
  kind: "source";
  name: string;
  options: unknown;
  /** New submissions since the last poll (or handed over with `ctx.submit` as found). Yielding a known id again is harmless (ignored). */
  poll(ctx: SourceContext): Promise<Submission[]>;
  close?(): Promise<void>;
}

export interface ExecutorContext {
  log: Logger;
  /** Aborted on validator shutdown; the executor must stop the run and clean up. */
  signal: AbortSignal;
  /** Called once the run holds its slot (the status shows which run each slot is running). */
  onSlot?(slot: string): void;
}

/**
 * One slot of an executor's device pool as the status shows it. A slot is a set of devices no other slot
 * shares (GPUs, CPU cores, on one host); a run holds one slot from start to end, and the pipeline never
 * has more runs in flight than slots are in the pool.
 */
export interface SlotStatus {
  /** Unique in the pool and stable across restarts, e.g. `gpu:0`, `cpu:0-3`, `gpu-2/gpu:1` (a slot of host gpu-2). */
  id: string;
  /** The machine the slot is on; null for this one. */
  host: string | null;
  /** The devices in words, e.g. `GPU 0: NVIDIA H100 80GB HBM3`, `cores 0-3`. */
  devices: string;
  state: "idle" | "busy" | "out";
  run: { submissionId: string; runIndex: number; startedAt: number } | null;
  /** Validator-side failures (harness_error, executor_error) in a row on this slot. */
  failures: number;
  /** Why the slot left the pool, when it is out. */
  reason: string | null;
  /** Runs this slot finished since start. */
  runs: number;
}

/** A token shard as an executor provides it. */
export interface TokenShard {
  /** Where the file is, for people: a path on this machine, or host:path. */
  where: string;
  sha256: string;
}

export interface Executor {
  kind: "executor";
  name: string;
  options: unknown;
  /** Prepare (build images, connect). Called once before the first evaluation. */
  init?(log: Logger): Promise<void>;
  /**
   * The token shard the harness reads under this executor when a request names `dataPath` (its
   * benchmark.data_path), with the sha256 of the file; null when there is none there. Checked at start.
   */
  tokenShard?(dataPath: string, log: Logger): Promise<TokenShard | null>;
  /**
   * Runs one evaluation. Must resolve with a result (use `failedResult` for transport failures);
   * the core validates it with `parseResult` anyway.
   */
  evaluate(request: EvaluationRequest, ctx: ExecutorContext): Promise<EvaluationResult>;
  /**
   * The device pool, once `init` has built it. The pipeline runs at most as many evaluations at once as
   * slots are not out; without it, `concurrency` (default 1) alone decides.
   */
  slots?(): SlotStatus[];
  close?(): Promise<void>;
}

export interface ScoreEvent {
  kind: "score";
  submissionId: string;
  hotkey: string;
  uid: number | null;
  state: "scored" | "failed";
  score: number | null;
  successfulRuns: number;
  totalRuns: number;
  runs: { runIndex: number; success: boolean; tps: number; errorCode: string | null }[];
  errorCode: string | null;
  errorMessage: string | null;
  leaderSubmissionId: string | null;
}

export interface WeightsEvent {
  kind: "weights";
  decisionId: number;
  block: number | null;
  uids: number[];
  weights: number[];
  reason: string;
  leaderSubmissionId: string | null;
}

export type SinkPayload = ScoreEvent | WeightsEvent;

/** An event as sinks receive it: `id` is stable across retries and restarts (use it as an idempotency key). */
export interface SinkEvent<P extends SinkPayload = SinkPayload> {
  id: string;
  createdAt: number;
  payload: P;
}

export interface SinkContext {
  log: Logger;
  signal: AbortSignal;
}

export interface Sink {
  kind: "sink";
  name: string;
  options: unknown;
  /**
   * Delivers one event. Throwing means "not delivered, retry later"; the core retries with backoff and
   * delivers the same event id again. Events of kinds the sink ignores should simply return.
   */
  deliver(event: SinkEvent, ctx: SinkContext): Promise<void>;
  close?(): Promise<void>;
}

type Without<T, K extends keyof T> = Omit<T, K | "kind" | "options">;

/** Validates options and names the plugin in the error: `executor "docker": options.timeout: …`. */
export function parseOptions<S extends z.ZodType>(kind: string, name: string, schema: S, options: unknown): z.infer<S> {
  const parsed = schema.safeParse(options ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ ...i, path: ["options", ...i.path] }));
    throw new UserError(`${kind} "${name}": ${formatZodError({ issues } as z.ZodError)}`, "bad_config");
  }
  return parsed.data;
}

// Set by the factories below. A config may hold only plugins they built: an object that merely says
// `kind: "source"` (a JSON config can write one) has none of the functions the pipeline calls.
const BUILT = Symbol.for("crusades.plugin");

export function isPlugin(v: unknown): v is Source | Executor | Sink {
  return typeof v === "object" && v !== null && (v as { [BUILT]?: unknown })[BUILT] === true;
}

/** A plugin factory: call it with options; `pluginName` and `schema` let docs and configs find it by name. */
export type Factory<P, S extends z.ZodType> = ((options?: z.input<S>) => P) & { pluginName: string; schema: S };

function factory<P, S extends z.ZodType>(kind: P extends { kind: infer K } ? K & string : never, name: string, schema: S, build: (options: z.infer<S>) => object): Factory<P, S> {
  const make = (options?: z.input<S>) => {
    const opts = parseOptions(kind, name, schema, options);
    return { kind, name, options: opts, ...build(opts), [BUILT]: true } as P;
  };
  return Object.assign(make, { pluginName: name, schema });
}

/** `defineSource(name, schema, (opts) => ({ poll }))` → a factory `(options) => Source`. */
export const defineSource = <S extends z.ZodType>(name: string, schema: S, build: (options: z.infer<S>) => Without<Source, "name">) =>
  factory<Source, S>("source", name, schema, build);

export const defineExecutor = <S extends z.ZodType>(name: string, schema: S, build: (options: z.infer<S>) => Without<Executor, "name">) =>
  factory<Executor, S>("executor", name, schema, build);

export const defineSink = <S extends z.ZodType>(name: string, schema: S, build: (options: z.infer<S>) => Without<Sink, "name">) =>
  factory<Sink, S>("sink", name, schema, build);
