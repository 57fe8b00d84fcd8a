#!/usr/bin/env bun
// The miner CLI: check a hosted train.py the way validators will, commit its URL on chain (timelocked),
// and see where a commitment stands. Exit codes: 0 done, 1 failed, 2 bad usage.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline/promises";
import { parseArgs } from "node:util";
import { connectChain } from "../core/chain/client.ts";
import { HOTKEY_URI_ENV, loadHotkey, type Hotkey } from "../core/chain/wallet.ts";
import { buildCommitment, judgeRevealDelay, revealSlackSeconds } from "../core/commitment.ts";
import { QUICKNET } from "../core/timelock/index.ts";
import { UserError } from "../core/errors.ts";
import { fetchCode } from "../core/fetch.ts";
import { loadHParams, repoRoot } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";
import { normalizeCodeUrl } from "../core/urls.ts";
import { clockIsOff, describeClockOffset, localClock } from "../core/clock.ts";

class Usage extends Error {}

const COMMON = `
Common options:
  --network NAME|URL     finney (default), test, local, or a ws(s):// URL
  --netuid N             subnet (default: hparams.json netuid)
  --help                 this text`;

const HELP: Record<string, string> = {
  main: `usage: submit.ts <command> [options]

Commands:
  submit URL     check the code at URL, then commit it on chain (timelocked until the reveal)
  validate URL   check the code at URL as validators will, without touching the chain
  status         chain, subnet and (with a wallet) this hotkey's last commitment

Run \`submit.ts <command> --help\` for a command's options.`,
  submit: `usage: submit.ts submit URL [options]

Fetches URL, checks it like a validator does, builds the commitment <sha256(code)[:32]>:<url>, and
commits it with drand timelock encryption so nobody can read it before the reveal.

Options:
  --wallet.name NAME     wallet under ~/.bittensor/wallets (default: default)
  --wallet.hotkey NAME   hotkey of that wallet (default: default)
  --wallet.path DIR      wallets directory (default: ~/.bittensor/wallets)
  --reveal-blocks N      blocks until the reveal (default: hparams.json reveal_blocks)
  --block-time S         seconds per block (default: hparams.json block_time)
  --yes                  do not ask for confirmation (required when stdin is not a terminal)
  --allow-loopback       accept a 127.0.0.1 URL (local testing only: validators refuse it)
The key may instead come from ${HOTKEY_URI_ENV} (a mnemonic or //URI).${COMMON}`,
  validate: `usage: submit.ts validate URL [options]

Fetches URL and checks it as validators do (size, UTF-8, a file not a page, def inner_steps), then,
if python3 and local_test/verify.py are present, runs the tiny-profile verification on it.

Options:
  --no-verify            skip the local verification run
  --allow-loopback       accept a 127.0.0.1 URL (local testing only: validators refuse it)
  --help                 this text`,
  status: `usage: submit.ts status [options]

Options:
  --wallet.name NAME     with --wallet.hotkey (or ${HOTKEY_URI_ENV}): also show that hotkey's commitment
  --wallet.hotkey NAME
  --wallet.path DIR${COMMON}`,
};

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  network: { type: "string" },
  netuid: { type: "string" },
  "wallet.name": { type: "string" },
  "wallet.hotkey": { type: "string" },
  "wallet.path": { type: "string" },
  "reveal-blocks": { type: "string" },
  "block-time": { type: "string" },
  yes: { type: "boolean", short: "y" },
  "allow-loopback": { type: "boolean" },
  "no-verify": { type: "boolean" },
} as const;

const ALLOWED: Record<string, string[]> = {
  submit: ["help", "network", "netuid", "wallet.name", "wallet.hotkey", "wallet.path", "reveal-blocks", "block-time", "yes", "allow-loopback"],
  validate: ["help", "no-verify", "allow-loopback"],
  status: ["help", "network", "netuid", "wallet.name", "wallet.hotkey", "wallet.path"],
};

const RULE = (revealBlocks: number, blockTime: number, sha256: string) =>
  `rule: validators order commitments by commit block; the first commitment of those bytes wins (sha256 ${sha256.slice(0, 16)}…, bound in the commitment) wherever they are hosted, and a commitment must stay sealed ${revealBlocks} blocks × ${blockTime} s after its block`;

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]["type"] extends "boolean" ? boolean : string };

const out = (line = "") => process.stdout.write(line + "\n");
// The CLI prints its own progress lines; the client's log only adds warnings unless asked for more.
const log = createLogger({ level: (process.env.CRUSADES_LOG_LEVEL as "info") || "warn" });

function int(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v)) throw new Usage(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

function positive(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Usage(`--${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

/** Fetches and checks the code; returns its bytes and the URL it was fetched from. */
async function fetchChecked(url: string, allowLoopback: boolean) {
  const hp = loadHParams();
  out(`fetching ${url}`);
  const r = await fetchCode(url, { maxBytes: hp.max_code_bytes, timeoutMs: hp.code_fetch_timeout * 1000, allowLoopback, userAgent: "crusades-miner" });
  if (!r.ok) throw new UserError(`the code at ${url} would be rejected by validators: ${r.message}`, r.code);
  out(`✓ fetched ${r.bytes.length} bytes from ${r.url} (sha256 ${r.sha256.slice(0, 16)}…)`);
  out("✓ a single UTF-8 Python file that defines inner_steps");
  return r;
}

function runVerify(code: Uint8Array): "passed" | "skipped" {
  const script = join(repoRoot, "local_test", "verify.py");
  const python = spawnSync("python3", ["--version"], { encoding: "utf8" });
  if (python.error || python.status !== 0) {
    out("note: python3 not found; skipped the local verification run");
    return "skipped";
  }
  if (!existsSync(script)) {
    out(`note: ${script} not found; skipped the local verification run`);
    return "skipped";
  }
  const dir = mkdtempSync(join(tmpdir(), "crusades-validate-"));
  try {
    const file = join(dir, "train.py");
    writeFileSync(file, code);
    out("running local_test/verify.py --profile tiny (CPU, a few seconds to minutes)…");
    const r = spawnSync("python3", [script, file, "--profile", "tiny"], { stdio: "inherit", cwd: repoRoot });
    if (r.status !== 0) throw new UserError(`local verification failed (verify.py exited ${r.status ?? r.signal}); see its output above`, "verify_failed");
    out("✓ local verification passed");
    return "passed";
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true;
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

async function cmdValidate(url: string, v: Values): Promise<number> {
  const r = await fetchChecked(url, !!v["allow-loopback"]);
  buildCommitment(r.bytes, url); // size check: a URL that cannot be committed is not valid either
  if (!v["no-verify"]) runVerify(r.bytes);
  out("");
  out(`ready: bun scripts/submit.ts submit ${url} --wallet.name NAME --wallet.hotkey HOTKEY`);
  return 0;
}

async function cmdSubmit(url: string, v: Values): Promise<number> {
  const hp = loadHParams();
  const netuid = int(v.netuid, "netuid", hp.netuid);
  const revealBlocks = int(v["reveal-blocks"], "reveal-blocks", hp.reveal_blocks);
  const blockTime = positive(v["block-time"], "block-time", hp.block_time);
  const network = v.network ?? "finney";
  if (!v.yes && !process.stdin.isTTY) throw new Usage("stdin is not a terminal: pass --yes to commit without confirmation");

  // Everything that can fail without the chain fails before we connect.
  const code = await fetchChecked(url, !!v["allow-loopback"]);
  const payload = buildCommitment(code.bytes, url);
  out(`✓ commitment ${payload} (${new TextEncoder().encode(payload).length} bytes)`);
  const key = await loadHotkey({ name: v["wallet.name"] ?? "default", hotkey: v["wallet.hotkey"] ?? "default", path: v["wallet.path"] });
  out(`hotkey ${key.ss58} (from ${key.origin})`);

  out(`connecting to ${network}…`);
  const chain = await connectChain({ network, log });
  try {
    out(`connected at block ${await chain.currentBlock()}`);
    const uid = await chain.uidOf(netuid, key.ss58);
    if (uid === null) {
      throw new UserError(`hotkey ${key.ss58} is not registered on subnet ${netuid}; register it first (btcli subnet register --netuid ${netuid})`, "not_registered");
    }
    out(`uid ${uid} on subnet ${netuid}`);
    const status = await chain.lastCommitment(netuid, key.ss58);
    if (status.pending) {
      out(`warning: your commitment from block ${status.pending.block} has not revealed yet; this one replaces it and the old one will never reveal`);
    }
    out(RULE(hp.reveal_blocks, hp.block_time, code.sha256));
    const asked = revealBlocks * blockTime;
    if (asked < hp.reveal_blocks * hp.block_time - revealSlackSeconds({ blockTime: hp.block_time }, QUICKNET)) {
      out(`warning: --reveal-blocks ${revealBlocks} × --block-time ${blockTime} s = ${asked} s is shorter than the ${hp.reveal_blocks * hp.block_time} s validators on hparams.json require; they will reject this commitment as revealed too soon`);
    }
    if (!(await confirm(`commit to subnet ${netuid} on ${network}, revealing in about ${revealBlocks} blocks?`, !!v.yes))) {
      out("cancelled; nothing was sent");
      return 1;
    }
    out(`sending set_commitment (timelocked for ${revealBlocks} blocks) and waiting for inclusion…`);
    const receipt = await chain.setCommitment(key.pair, netuid, payload, { blocksUntilReveal: revealBlocks, blockTime, clock: localClock });
    if (clockIsOff(receipt.clockOffsetSeconds, blockTime)) {
      out(`note: this machine's clock is ${describeClockOffset(receipt.clockOffsetSeconds)} (block ${receipt.chainTimeBlock}'s timestamp); the reveal round was taken from chain time`);
    }
    out(`✓ committed in block ${receipt.block}${receipt.recovered ? " (confirmed after a reconnect)" : ""}`);
    out(`  extrinsic      ${receipt.hash}`);
    out(`  reveal round   ${receipt.revealRound} (drand), ${Math.round(receipt.sealedSeconds)} s after block ${receipt.block}'s timestamp`);
    out(`  reveal block   ≈ ${receipt.estimatedRevealBlock}`);
    // The transaction may have waited for a block longer than planned: check it as validators will.
    const late = judgeRevealDelay(receipt.sealedSeconds, { revealBlocks, blockTime, maxRevealBlocks: Number.POSITIVE_INFINITY }, QUICKNET);
    if (late) throw new UserError(`validators will reject this commitment (${late.reason}): it was ${late.message}; commit again`, late.reason);
    out("Keep the code at that URL unchanged until it is evaluated: validators check it against the committed hash.");
    return 0;
  } finally {
    await chain.close();
  }
}

async function cmdStatus(v: Values): Promise<number> {
  const hp = loadHParams();
  const netuid = int(v.netuid, "netuid", hp.netuid);
  const network = v.network ?? "finney";
  // The hotkey is optional here: without one, status still describes the chain and subnet.
  let key: Hotkey | null = null;
  let keyNote = "";
  if (v["wallet.name"] || v["wallet.hotkey"] || process.env[HOTKEY_URI_ENV]) {
    try {
      key = await loadHotkey({ name: v["wallet.name"] ?? "default", hotkey: v["wallet.hotkey"] ?? "default", path: v["wallet.path"] });
    } catch (e) {
      keyNote = (e as Error).message;
    }
  }
  out(`connecting to ${network}…`);
  const chain = await connectChain({ network, log });
  try {
    out(`block              ${await chain.currentBlock()}`);
    out(`netuid             ${netuid}`);
    out(`reveal             ${hp.reveal_blocks} blocks × ${hp.block_time} s`);
    if (!(await chain.subnetExists(netuid))) {
      out(`warning: subnet ${netuid} does not exist on ${network}`);
      return 1;
    }
    out(`neurons            ${await chain.subnetSize(netuid)}`);
    out(`commit-reveal wts  ${(await chain.commitRevealEnabled(netuid)) ? "on" : "off"}`);
    if (keyNote) out(`hotkey             not loaded: ${keyNote}`);
    if (key) {
      const uid = await chain.uidOf(netuid, key.ss58);
      out(`hotkey             ${key.ss58} (${uid === null ? "not registered" : `uid ${uid}`})`);
      const s = await chain.lastCommitment(netuid, key.ss58);
      if (s.committedBlock === null && !s.revealed) out("commitment         none");
      else {
        if (s.committedBlock !== null) out(`last commitment    block ${s.committedBlock}`);
        if (s.pending) out(`pending            reveals at drand round ${s.pending.revealRound}`);
        if (s.revealed) out(`revealed           block ${s.revealed.block}: ${s.revealed.data}`);
        out(`revealed yet       ${s.isRevealed ? "yes" : "no"}`);
      }
    }
    return 0;
  } finally {
    await chain.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    out(HELP.main);
    return command ? 0 : 2;
  }
  if (!(command in ALLOWED)) {
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP.main}\n`);
    return 2;
  }
  try {
    const { values, positionals } = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true });
    const v = values as Values;
    const stray = Object.keys(v).filter((k) => !ALLOWED[command]!.includes(k));
    if (stray.length) throw new Usage(`${command} does not take --${stray.join(", --")}`);
    if (v.help) {
      out(HELP[command]);
      return 0;
    }
    const wantsUrl = command !== "status";
    if (positionals.length !== (wantsUrl ? 1 : 0)) {
      throw new Usage(wantsUrl ? `${command} takes exactly one URL` : `status takes no positional arguments`);
    }
    if (command === "validate") return await cmdValidate(normalizeInput(positionals[0]!), v);
    if (command === "submit") return await cmdSubmit(normalizeInput(positionals[0]!), v);
    return await cmdStatus(v);
  } catch (e) {
    if (e instanceof Usage || (e as { code?: string }).code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`error: ${(e as Error).message}\n\n${HELP[command]}\n`);
      return 2;
    }
    if (e instanceof UserError) {
      process.stderr.write(`error: ${e.message}\n`);
      return e.code === "usage" ? 2 : 1;
    }
    process.stderr.write(`error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}

/** Page URLs (gist pages, GitHub blobs) become raw file URLs, so what is checked is what is committed. */
function normalizeInput(url: string): string {
  const trimmed = url.trim();
  if (!trimmed) throw new Usage("the URL is empty");
  return normalizeCodeUrl(trimmed);
}

if (import.meta.main) {
  process.exit(await main(process.argv.slice(2)));
}
