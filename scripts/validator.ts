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
import { checkConcurrency, loadConfig, type Config } from "../core/config.ts";
import { UserError } from "../core/errors.ts";
import { benchmarkSettings, defaultHParamsPath, loadHParams, type HParams } from "../core/hparams.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { createPipeline } from "../core/pipeline.ts";
import { checkTokenShard } from "../core/token-shard.ts";
import { createScheduler, type WeightsClock } from "../core/scheduler.ts";
import { lockStore } from "../core/storage/lock.ts";
import type { StoreFailure } from "../core/storage/sqlite.ts";
import { Store } from "../core/storage/store.ts";
import { needsChain } from "../plugins/chain-binding.ts";
import { registry } from "../plugins/index.ts";

const HELP = `usage: validator.ts --config FILE [--once]

  --config FILE   the validator config (crusades.config.ts, or .json with { "use": name, "options": {...} })
  --once          run until idle (every revealed submission scored, weights set once when due, every
                  event delivered), then exit; without it, run until SIGINT/SIGTERM
  --help          this text

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
    parsed = parseArgs({ options: { config: { type: "string" }, once: { type: "boolean" }, help: { type: "boolean", short: "h" } }, strict: true });
  } catch (e) {
    throw new Usage((e as Error).message);
  }
  if (parsed.values.help) {
    console.log(HELP);
    process.exit(0);
  }
  if (!parsed.values.config) throw new Usage("--config FILE is required (see --help)");
  return { config: parsed.values.config, once: parsed.values.once ?? false };
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
  const genesisHash = client.api.genesisHash.toHex();
  for (const p of [...config.sources, ...config.sinks]) {
    if (needsChain(p)) p.bindChain({ chain: client, netuid, hparams, signer: key.pair, uid, genesisHash });
  }
  return { client, hotkey: key.ss58, uid, genesisHash };
}

const short = (hash: string) => `${hash.slice(0, 10)}…`;

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
      const { undelivered } = await scheduler.runOnce();
      // A failed submission is published too once its event is delivered: the outcome is in error_code.
      const c = store.db
        .prepare("SELECT COUNT(*) FILTER (WHERE error_code IS NULL) AS scored, COUNT(*) FILTER (WHERE error_code IS NOT NULL) AS failed FROM submissions WHERE state IN ('scored', 'failed', 'published')")
        .get<{ scored: number; failed: number }>()!;
      log.info(`idle: ${c.scored} scored, ${c.failed} failed; ${undelivered} event deliveries pending`);
      if (undelivered > 0 && !controller.signal.aborted) {
        log.error(`${undelivered} event deliveries could not be made; they stay queued for the next start`);
        code = 1;
      }
    } else {
      log.info(`running; polling every ${config.pollIntervalSeconds}s (SIGINT or SIGTERM to stop)`);
      await scheduler.run();
      if (failure) code = 1;
    }
  } finally {
    controller.abort();
    pipeline.setStatus({ state: "stopped", current: [] });
    for (const p of [...config.sources, config.executor, ...config.sinks]) {
      await p.close?.().catch((e: Error) => log.warn(`closing ${p.kind} ${p.name}: ${e.message}`));
    }
    await chain?.client.close().catch(() => {});
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
