#!/usr/bin/env bun
// The validator: reads submissions from its sources, evaluates them with its executor, scores them and
// hands scores and weights to its sinks, all as configured in crusades.config.ts.
// Exit codes: 0 done or stopped by a signal, 1 failed (hotkey not registered, chain unreachable, token
// shard missing or not the one hparams pins, events left undelivered after --once), 2 bad usage, config or
// database path.
// A store that is deleted, or a result that cannot be stored, stops it with exit 1 (a supervisor restarts
// it and the run is re-queued); another validator already writing the same database, exit 2.
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { connectChain, loadHotkey, resolveEndpoint, type ChainClient } from "../core/chain/index.ts";
import { clockIsOff, describeClockOffset, localClock } from "../core/clock.ts";
import { checkConcurrency, loadConfig, type Config } from "../core/config.ts";
import { UserError } from "../core/errors.ts";
import { benchmarkSettings, defaultHParamsPath, loadHParams, type HParams } from "../core/hparams.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { createPipeline } from "../core/pipeline.ts";
import { checkTokenShard } from "../core/token-shard.ts";
import { createScheduler, settlesWithin, type WeightsClock } from "../core/scheduler.ts";
import { lockStore } from "../core/storage/lock.ts";
import type { StoreFailure } from "../core/storage/sqlite.ts";
import { Store } from "../core/storage/store.ts";
import { needsChain } from "../plugins/chain-binding.ts";
import { registry } from "../plugins/index.ts";

const HELP = `usage: validator.ts --config FILE [--once [--drain-seconds N]]

  --config FILE       the validator config (crusades.config.ts, or .json with { "use": name, "options": {...} })
  --once              run until idle (every revealed submission scored, weights set once when due, every
                      event delivered), then exit; without it, run until SIGINT/SIGTERM
  --drain-seconds N   with --once: the longest wait for the sinks to take the last events (default 60);
                      what they have not taken by then stays queued for the next start, and the exit is 1
  --help              this text

The hotkey comes from the config's wallet (~/.bittensor/wallets/NAME/hotkeys/HOTKEY) or, if set, from
$CRUSADES_HOTKEY_URI (a mnemonic or //URI).`;

class Usage extends UserError {
  constructor(message: string) {
    super(message, "usage");
  }
}

function args() {
  let parsed;
  try {
    parsed = parseArgs({
      options: { config: { type: "string" }, once: { type: "boolean" }, "drain-seconds": { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    });
  } catch (e) {
    throw new Usage((e as Error).message);
  }
  if (parsed.values.help) {
    console.log(HELP);
    process.exit(0);
  }
  if (!parsed.values.config) throw new Usage("--config FILE is required (see --help)");
  const drain = parsed.values["drain-seconds"];
  if (drain !== undefined && !parsed.values.once) throw new Usage("--drain-seconds goes with --once");
  const drainSeconds = Number(drain ?? 60);
  if (!/^\d+$/.test(drain ?? "60") || drainSeconds > 86_400) throw new Usage(`--drain-seconds: a whole number of seconds up to 86400, got ${JSON.stringify(drain)}`);
  return { config: parsed.values.config, once: parsed.values.once ?? false, drainSeconds };
}

function readHParams(config: Config): HParams {
  try {
    return loadHParams(config.hparams ? resolve(config.hparams) : defaultHParamsPath);
  } catch (e) {
    throw new UserError((e as Error).message, "bad_config");
  }
}

interface Chain {
  client: ChainClient;
  hotkey: string;
  uid: number;
  genesisHash: string;
}

async function joinChain(config: Config, hparams: HParams, netuid: number, log: Logger): Promise<Chain> {
  const key = await loadHotkey(config.wallet);
  const client = await connectChain({ network: config.network, log: log.child({ chain: config.network }), retryRefused: true });
  const uid = await client.uidOf(netuid, key.ss58);
  if (uid === null) {
    await client.close();
    throw new UserError(
      `hotkey ${key.ss58} (${key.origin}) is not registered on subnet ${netuid} of ${config.network}: register it first (btcli subnet register --netuid ${netuid}), or check the wallet in the config`,
      "not_registered",
    );
  }
  // The store's and the API's times come from this clock; the API shows an age in the future as 0, so
  // a clock hours off would go unseen there.
  const head = await client.chainTime();
  const offset = (localClock() - head.ms) / 1000;
  if (clockIsOff(offset, hparams.block_time)) {
    log.warn(
      `this machine's clock is ${describeClockOffset(offset)} (block ${head.block}'s timestamp): the times this validator records, and the ages the API shows from them, are off by as much; set the clock (NTP)`,
    );
  }
  const genesisHash = client.api.genesisHash.toHex();
  for (const p of [...config.sources, ...config.sinks]) {
    if (needsChain(p)) p.bindChain({ chain: client, netuid, hparams, signer: key.pair, uid, genesisHash });
  }
  return { client, hotkey: key.ss58, uid, genesisHash };
}

const short = (hash: string) => `${hash.slice(0, 10)}…`;

/** How long a stop waits for the loops, then for each plugin's close: a frozen node must not hold it longer. */
const STOP_GRACE_MS = 5000;

function summary(config: Config, hparams: HParams, netuid: number, chain: Chain | null, path: string, once: boolean): string {
  const bench = benchmarkSettings(hparams, config.profile);
  const endpoint = resolveEndpoint(config.network);
  const executorNote = config.executor.name === "process" ? " (unsafe: no sandbox, development only)" : "";
  return [
    `crusades validator${once ? " (--once)" : ""}`,
    `  network   ${chain ? `${endpoint === config.network ? endpoint : `${config.network} (${endpoint})`}, netuid ${netuid}, genesis ${short(chain.genesisHash)}` : "none (no chain plugin)"}`,
    `  hotkey    ${chain ? `${chain.hotkey}, uid ${chain.uid}` : "none"}`,
    `  sources   ${config.sources.map((s) => s.name).join(", ")}`,
    `  executor  ${config.executor.name}${executorNote}`,
    `  sinks     ${config.sinks.map((s) => s.name).join(", ") || "none"}`,
    `  limits    ${hparams.evaluation_runs} run(s) per submission, profile ${config.profile} (${bench.eval_steps} steps, timeout ${bench.timeout_seconds}s), code up to ${hparams.max_code_bytes} bytes, concurrency ${config.concurrency ?? "one per slot"}`,
    `  weights   ${chain ? `every ${hparams.set_weights_interval_blocks} blocks, burn uid ${hparams.burn_uid} at ${hparams.burn_rate * 100}%` : "not set (no chain)"}`,
    `  database  ${path}`,
  ].join("\n");
}

/** Each sink's last error on its still-pending deliveries, for the line that says they were not taken. */
function lastErrors(store: Store): string {
  const rows = store.db
    .prepare("SELECT sink, COUNT(*) AS n, MAX(last_error) AS error FROM deliveries WHERE state = 'pending' GROUP BY sink ORDER BY sink")
    .all<{ sink: string; n: number; error: string | null }>();
  return rows.map((r) => `${r.sink}: ${r.n}${r.error ? `, last error: ${r.error.slice(0, 200)}` : ", not tried yet"}`).join("; ");
}

async function main(): Promise<number> {
  const log = createLogger();
  const a = args();
  const config = await loadConfig(a.config, registry);
  const hparams = readHParams(config);
  const dbPath = resolve(config.database);
  mkdirSync(dirname(dbPath), { recursive: true });
  // One writer per store, before anything else: a second validator on it (`--once` by hand beside the
  // service) would re-queue the first one's run, evaluate it twice and send weights twice.
  const lock = await lockStore(dbPath);
  // Before the chain and the store: a validator holding another token shard than the pinned one scores nothing.
  await checkTokenShard(benchmarkSettings(hparams, config.profile), config.executor, log.child({ executor: config.executor.name }));
  const netuid = config.netuid ?? hparams.netuid;
  const chainPlugins = [...config.sources, ...config.sinks].filter(needsChain);
  const chain = chainPlugins.length ? await joinChain(config, hparams, netuid, log) : null;

  const store = await Store.open(dbPath);
  const previousChain = chain && store.bindChain(chain.genesisHash).previous;
  if (chain && previousChain) {
    log.warn(
      `${dbPath} was last used on the chain with genesis ${short(previousChain)}, but ${resolveEndpoint(config.network)} serves genesis ${short(chain.genesisHash)} (a reset chain or another network): weights start over on this chain; the submissions already in the store stay (give each chain its own database file to keep them apart)`,
    );
  }
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (name: string) => {
    signals++;
    if (signals > 1) {
      log.warn(`${name} again: exiting now; the interrupted run is re-queued at the next start`);
      process.exit(130);
    }
    log.info(`${name}: stopping; the current run is abandoned and re-queued (send it again to exit at once)`);
    controller.abort();
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  const pipeline = createPipeline({
    store,
    hparams,
    profile: config.profile,
    sources: config.sources,
    executor: config.executor,
    sinks: config.sinks,
    log,
    concurrency: config.concurrency,
    allowLoopbackCode: config.allowLoopbackCode,
    signal: controller.signal,
  });
  const weights: WeightsClock | null = chain && {
    intervalBlocks: hparams.set_weights_interval_blocks,
    genesisHash: chain.genesisHash,
    currentBlock: () => chain.client.currentBlock(),
    lastUpdate: () => chain.client.lastUpdate(netuid, chain.uid),
    uidOf: (hotkey) => chain.client.uidOf(netuid, hotkey),
  };
  let failure: StoreFailure | null = null;
  const fatal = (e: StoreFailure) => {
    if (failure) return;
    failure = e;
    log.error(`${e.message}; stopping (exit 1) for a supervisor to restart; unfinished runs are re-queued at the next start`);
    controller.abort();
  };
  const scheduler = createScheduler({ pipeline, store, log, pollIntervalSeconds: config.pollIntervalSeconds, weights, signal: controller.signal, fatal });

  let code = 0;
  // What a stop gave up waiting for, named in one line.
  let abandoned: string[] = [];
  try {
    console.log(summary(config, hparams, netuid, chain, dbPath, a.once));
    await config.executor.init?.(log.child({ executor: config.executor.name }));
    checkConcurrency(config.concurrency, config.executor);
    const slots = config.executor.slots?.() ?? [];
    if (slots.length) console.log(`  slots     ${slots.map((s) => `${s.id} (${s.devices})`).join(", ")}`);
    pipeline.setStatus({
      state: "idle",
      startedAt: Date.now(),
      pid: process.pid,
      hotkey: chain?.hotkey ?? null,
      uid: chain?.uid ?? null,
      network: chain ? config.network : null,
      netuid: chain ? netuid : null,
      lastWeightsBlock: chain ? (await chain.client.lastUpdate(netuid, chain.uid)) || null : null,
    });
    if (a.once) {
      const pass = scheduler.runOnce({ deliveryTimeoutMs: a.drainSeconds * 1000 });
      // A signal ends the pass; a frozen node or hanging sink holding it gets STOP_GRACE_MS more.
      const stopped = new Promise<void>((resolve) => controller.signal.addEventListener("abort", () => resolve(), { once: true }));
      const ended = await Promise.race([pass.then(() => true), stopped.then(() => settlesWithin(STOP_GRACE_MS, pass))]);
      if (!ended) {
        abandoned = ["the --once pass (a source poll, fetch, run or delivery waiting on the node or a sink)"];
        return code;
      }
      const { undelivered } = await pass;
      // A failed submission is published too once its event is delivered: the outcome is in error_code.
      const c = store.db
        .prepare("SELECT COUNT(*) FILTER (WHERE error_code IS NULL) AS scored, COUNT(*) FILTER (WHERE error_code IS NOT NULL) AS failed FROM submissions WHERE state IN ('scored', 'failed', 'published')")
        .get<{ scored: number; failed: number }>()!;
      log.info(`idle: ${c.scored} scored, ${c.failed} failed; ${undelivered} event deliveries pending`);
      if (undelivered > 0 && !controller.signal.aborted) {
        log.error(
          `${undelivered} event deliveries still not taken after waiting ${a.drainSeconds} s for the sinks (${lastErrors(store)}); they stay queued for the next start`,
        );
        code = 1;
      }
    } else {
      log.info(`running; polling every ${config.pollIntervalSeconds}s (SIGINT or SIGTERM to stop)`);
      ({ abandoned } = await scheduler.run(STOP_GRACE_MS));
      if (failure) code = 1;
    }
  } finally {
    controller.abort();
    pipeline.setStatus({ state: "stopped", current: [] });
    for (const p of [...config.sources, config.executor, ...config.sinks]) {
      const closing = p.close?.().catch((e: Error) => log.warn(`closing ${p.kind} ${p.name}: ${e.message}`));
      if (closing && !(await settlesWithin(STOP_GRACE_MS, closing))) abandoned.push(`closing ${p.kind} ${p.name}`);
    }
    if (chain && !(await settlesWithin(STOP_GRACE_MS, chain.client.close()))) abandoned.push("closing the chain connection");
    if (abandoned.length) {
      log.warn(`stopped without waiting longer than ${STOP_GRACE_MS / 1000} s for: ${abandoned.join("; ")} (an interrupted run is re-queued at the next start)`);
    }
    store.close();
    lock.release();
  }
  log.info("stopped");
  return code;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    if (e instanceof UserError) {
      console.error(`validator: ${e.message}`);
      process.exit(["usage", "bad_config", "bad_database", "store_locked"].includes(e.code) ? 2 : 1);
    }
    console.error(`validator: ${e.message}`);
    if (process.env.CRUSADES_LOG_LEVEL === "debug") console.error(e.stack);
    process.exit(1);
  },
);
