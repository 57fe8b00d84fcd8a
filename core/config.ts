// The validator's config: which plugins, with which options. Written as `crusades.config.ts`
// (`export default defineConfig({...})`) or as JSON with `{ "use": "docker", "options": {...} }` entries.
// Validation happens at start, and every failure is one line naming the field.
import { readFileSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { Profile } from "./contracts.ts";
import { formatZodError, UserError } from "./errors.ts";
import { isPlugin, type Executor, type Sink, type Source } from "./plugin.ts";

type Kind = "source" | "executor" | "sink";
type PluginOf<K extends Kind> = K extends "source" ? Source : K extends "executor" ? Executor : Sink;

/** Factories by name, so JSON configs (and typos) can be resolved with a helpful message. */
export type PluginRegistry = { [K in Kind]: Record<string, (options?: never) => PluginOf<K>> };

const NamedRef = z.object({ use: z.string().min(1), options: z.unknown().optional() }).strict();

const article = (kind: Kind) => (kind === "executor" ? "an" : "a");

const pluginRef = <K extends Kind>(kind: K) =>
  z.unknown().superRefine((v, ctx) => {
    const expected = `expected ${article(kind)} ${kind} plugin built by its factory or { use: "<name>", options: {...} }`;
    if (isPlugin(v)) {
      if (v.kind !== kind) ctx.addIssue({ code: "custom", message: `${expected}, not ${article(v.kind)} ${v.kind} ("${v.name}")` });
    } else if (v && typeof v === "object" && "kind" in v) {
      ctx.addIssue({ code: "custom", message: `${expected}: an object with a "kind" is not a plugin unless a factory built it` });
    } else if (!NamedRef.safeParse(v).success) {
      ctx.addIssue({ code: "custom", message: expected });
    }
  }) as unknown as z.ZodType<PluginOf<K> | z.infer<typeof NamedRef>>;

export const ConfigSchema = z
  .object({
    network: z.string().min(1).default("finney").describe("finney, test, local, or a ws(s):// URL of a subtensor node."),
    netuid: z.number().int().min(0).max(65535).optional().describe("Overrides hparams.netuid (e.g. a test subnet)."),
    wallet: z
      .object({ name: z.string().min(1).default("default"), hotkey: z.string().min(1).default("default"), path: z.string().optional() })
      .default({ name: "default", hotkey: "default" })
      .describe("Bittensor wallet (~/.bittensor/wallets/NAME/hotkeys/HOTKEY); CRUSADES_HOTKEY_URI overrides it."),
    database: z.string().min(1).default("data/crusades.db").describe("SQLite file of the validator's store (the API reads it)."),
    hparams: z.string().min(1).optional().describe("Competition parameters file; defaults to hparams/hparams.json."),
    profile: Profile.default("benchmark").describe("`benchmark` on GPUs in production; `tiny` runs on a CPU (demo, tests)."),
    sources: z.array(pluginRef("source")).min(1, "at least one source is needed").describe("Where submissions come from."),
    executor: pluginRef("executor").describe("Where evaluations run."),
    sinks: z.array(pluginRef("sink")).default([]).describe("Who receives scores and weight decisions."),
    concurrency: z
      .number()
      .int()
      .min(1)
      .max(64)
      .optional()
      .describe("Most evaluations at once; default: one per slot of the executor's device pool. More than the pool's slots is refused at start."),
    pollIntervalSeconds: z.number().positive().default(12).describe("Seconds between source polls."),
    allowLoopbackCode: z.boolean().default(false).describe("Test and demo only: lets the code fetcher reach 127.0.0.1."),
  })
  .strict();

export type ConfigInput = z.input<typeof ConfigSchema>;
export interface Config extends Omit<z.output<typeof ConfigSchema>, "sources" | "executor" | "sinks"> {
  sources: Source[];
  executor: Executor;
  sinks: Sink[];
}

/** Identity with types: lets `crusades.config.ts` be checked by the editor. Validation is in `resolveConfig`. */
export function defineConfig(config: ConfigInput): ConfigInput {
  return config;
}

function resolvePlugin<K extends Kind>(kind: K, ref: unknown, registry: PluginRegistry, path: string): PluginOf<K> {
  if (isPlugin(ref)) return ref as PluginOf<K>;
  const { use, options } = ref as z.infer<typeof NamedRef>;
  const factory = registry[kind][use];
  if (!factory) {
    throw new UserError(`${path}.use: unknown ${kind} "${use}" (known: ${Object.keys(registry[kind]).join(", ") || "none"})`, "bad_config");
  }
  try {
    return (factory as (o: unknown) => PluginOf<K>)(options);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${path}: ${e.message}`, "bad_config");
    throw e;
  }
}

export function resolveConfig(raw: unknown, registry: PluginRegistry): Config {
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) throw new UserError(formatZodError(parsed.error), "bad_config");
  const c = parsed.data;
  const sources = c.sources.map((s, i) => resolvePlugin("source", s, registry, `sources.${i}`));
  const names = new Set<string>();
  for (const [i, s] of sources.entries()) {
    if (names.has(s.name)) throw new UserError(`sources.${i}: a second source named "${s.name}"; names must be unique`, "bad_config");
    names.add(s.name);
  }
  const sinks = c.sinks.map((s, i) => resolvePlugin("sink", s, registry, `sinks.${i}`));
  const sinkNames = new Set<string>();
  for (const [i, s] of sinks.entries()) {
    if (sinkNames.has(s.name)) throw new UserError(`sinks.${i}: a second sink named "${s.name}"; names must be unique`, "bad_config");
    sinkNames.add(s.name);
  }
  return { ...c, sources, executor: resolvePlugin("executor", c.executor, registry, "executor"), sinks };
}

/**
 * Once the executor has built its device pool: `concurrency` may not exceed its slots, since runs in
 * flight beyond them would share a device. Returns the evaluations that run at once.
 */
export function checkConcurrency(concurrency: number | undefined, executor: Executor): number {
  const slots = executor.slots?.();
  if (!slots) return concurrency ?? 1;
  if (concurrency !== undefined && concurrency > slots.length) {
    throw new UserError(
      `concurrency: ${concurrency} is more than the ${slots.length} slot(s) of executor "${executor.name}" (${slots.map((s) => s.id).join(", ")}); concurrent runs would share a device: lower it, or give the executor more slots`,
      "bad_config",
    );
  }
  return concurrency ?? slots.length;
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ").trim();

/** A thrown value in words: configs can throw strings, null, anything. */
const thrown = (e: unknown) => (e instanceof Error ? oneLine(e.message) : e === null || e === undefined ? `threw ${e}` : `threw ${typeof e === "string" ? JSON.stringify(e) : String(e)}`);

/** How long a `.ts` config may take to evaluate: one whose top-level await never settles is a bad config. */
export const CONFIG_LOAD_TIMEOUT_MS = 15_000;

/** Loads a `.ts`/`.js` module (default export) or a `.json` file; every failure is a UserError. */
export async function loadConfig(path: string, registry: PluginRegistry, timeoutMs = CONFIG_LOAD_TIMEOUT_MS): Promise<Config> {
  const abs = isAbsolute(path) ? path : resolve(process.cwd(), path);
  let stat;
  try {
    stat = statSync(abs);
  } catch {
    throw new UserError(`config file not found: ${path}`, "bad_config");
  }
  // A FIFO or a device would block the read forever.
  if (!stat.isFile()) throw new UserError(`${path}: not a regular file (${stat.isDirectory() ? "a directory" : "a pipe, socket or device"})`, "bad_config");
  let raw: unknown;
  try {
    if (abs.endsWith(".json")) {
      raw = JSON.parse(readFileSync(abs, "utf8"));
    } else {
      let timer: ReturnType<typeof setTimeout> | undefined;
      // The timer also keeps the event loop alive: without it a never-settling top-level await lets the
      // process exit 0 with nothing said.
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new UserError(`${path}: did not finish loading within ${timeoutMs / 1000} s (a top-level await that never settles?)`, "bad_config")), timeoutMs);
      });
      const mod = (await Promise.race([import(pathToFileURL(abs).href), stalled]).finally(() => clearTimeout(timer))) as { default?: unknown };
      if (mod.default === undefined) throw new UserError(`${path}: no default export; write \`export default defineConfig({...})\``, "bad_config");
      raw = mod.default;
    }
  } catch (e) {
    if (e instanceof UserError) throw new UserError(e.message.startsWith(path) ? e.message : `${path}: ${e.message}`, "bad_config");
    if (e instanceof SyntaxError) throw new UserError(`${path}: not valid ${abs.endsWith(".json") ? "JSON" : "code"}: ${oneLine(e.message)}`, "bad_config");
    throw new UserError(`${path}: failed to load: ${thrown(e)}`, "bad_config");
  }
  try {
    return resolveConfig(raw, registry);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${path}: ${e.message}`, "bad_config");
    throw new UserError(`${path}: ${thrown(e)}`, "bad_config");
  }
}
