// The miner's on-chain commitment: `<first 32 hex of sha256(code)>:<url>`. The miner builds it, the chain
// timelocks it, the validator parses what the chain reveals. The older `{"code_url": …}` JSON form (no
// hash) is still read so commitments made with earlier miner tools are not lost.
import { OVERHEAD_BYTES } from "./timelock/ciphertext.ts";
import { UserError } from "./errors.ts";
import { sha256Hex } from "./fetch.ts";
import { shortenGistUrl } from "./urls.ts";

export const CODE_HASH_CHARS = 32;

/** `Data::TimelockEncrypted.encrypted` is a BoundedVec<u8, 1024> on chain (chain-spec §1.2). */
export const MAX_TIMELOCK_CIPHERTEXT_BYTES = 1024;

/**
 * Longest commitment text, in UTF-8 bytes, whose timelock ciphertext fits the chain: the plaintext is
 * the SCALE string (a 2-byte compact length for 64..16383 bytes) and the ciphertext adds a fixed
 * overhead (chain-spec §2.4), so 1024 − 244 − 2 = 778.
 */
export const MAX_COMMITMENT_BYTES = MAX_TIMELOCK_CIPHERTEXT_BYTES - OVERHEAD_BYTES - 2;

export interface Commitment {
  /** First 32 lowercase hex characters of sha256(code); null for the legacy JSON form. */
  codeHash: string | null;
  url: string;
  form: "hash_url" | "legacy_json";
}

export type CommitmentRejection = "malformed" | "oversize" | "bad_url";

export type ParsedCommitment =
  | { ok: true; commitment: Commitment }
  | { ok: false; reason: CommitmentRejection; message: string };

const utf8 = new TextEncoder();

export function codeHash(code: string | Uint8Array): string {
  return sha256Hex(typeof code === "string" ? utf8.encode(code) : code).slice(0, CODE_HASH_CHARS);
}

function checkUrl(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `not a URL: ${JSON.stringify(url.slice(0, 80))}`;
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") return `URL must be http(s), got ${parsed.protocol}`;
  if (/\s/.test(url)) return "URL contains whitespace";
  return null;
}

/**
 * The commitment text for `code` served at `url`. Gist URLs are shortened (the chain limit is bytes, and
 * a shorter text also costs less of the hotkey's per-epoch commitment space). Throws a UserError when the
 * URL is unusable or the result would not fit on chain, before anything is sent.
 */
export function buildCommitment(code: string | Uint8Array, url: string): string {
  const short = shortenGistUrl(url.trim());
  const bad = checkUrl(short);
  if (bad) throw new UserError(`cannot commit this URL: ${bad}`, "bad_url");
  const text = `${codeHash(code)}:${short}`;
  const size = utf8.encode(text).length;
  if (size > MAX_COMMITMENT_BYTES) {
    throw new UserError(
      `the commitment is ${size} bytes, over the chain's limit of ${MAX_COMMITMENT_BYTES} (a timelocked commitment is at most ${MAX_TIMELOCK_CIPHERTEXT_BYTES} ciphertext bytes); host the code at a shorter URL`,
      "oversize",
    );
  }
  return text;
}

const HASH_URL = /^([0-9a-fA-F]{32}):(\S+)$/;

/** Reads a revealed commitment. Never throws: anything unusable comes back with a reason. */
export function parseCommitment(data: string): ParsedCommitment {
  const text = data.trim();
  const size = utf8.encode(text).length;
  if (size > MAX_COMMITMENT_BYTES) {
    return { ok: false, reason: "oversize", message: `${size} bytes, over the ${MAX_COMMITMENT_BYTES}-byte limit` };
  }
  if (text.startsWith("{")) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { ok: false, reason: "malformed", message: "starts with '{' but is not valid JSON" };
    }
    const url = (json as { code_url?: unknown } | null)?.code_url;
    if (typeof url !== "string") return { ok: false, reason: "malformed", message: "JSON commitment without a string code_url" };
    const bad = checkUrl(url);
    if (bad) return { ok: false, reason: "bad_url", message: bad };
    return { ok: true, commitment: { codeHash: null, url, form: "legacy_json" } };
  }
  const m = HASH_URL.exec(text);
  if (!m) {
    return { ok: false, reason: "malformed", message: `expected <32 hex of sha256(code)>:<url>, got ${JSON.stringify(text.slice(0, 80))}` };
  }
  const bad = checkUrl(m[2]!);
  if (bad) return { ok: false, reason: "bad_url", message: bad };
  return { ok: true, commitment: { codeHash: m[1]!.toLowerCase(), url: m[2]!, form: "hash_url" } };
}

// ---- the reveal delay -----------------------------------------------------------------------------
// Priority goes to the commit block, so a commitment must stay sealed long enough that nobody can read
// it before others could commit: its drand round may not open sooner than `reveal_blocks × block_time`
// after its commit block's timestamp (chain time, never a local clock). The slack covers what an honest
// miner cannot control: the round grid and the wait between reading the head's time and its transaction's
// block (two blocks, a block counted as at least a drand period: on a fast test chain the wait is
// machine time, not blocks). The CLI aims half the slack past the minimum, so that wait can be 1.5× the
// slack before its commitment falls short.

type BeaconClock = { genesisTime: number; period: number };

export interface RevealRule {
  revealBlocks: number;
  /** Longest accepted delay: a longer one would hold every later commitment back as long. */
  maxRevealBlocks: number;
  blockTime: number;
}

/** Unix seconds at which drand publishes `round` (round 1 at genesis). */
export function roundPublishedAt(round: bigint, beacon: BeaconClock): number {
  return beacon.genesisTime + Number(round - 1n) * beacon.period;
}

/** The first round published at or after Unix second `t`. */
export function firstRoundFrom(t: number, beacon: BeaconClock): bigint {
  return BigInt(Math.max(1, Math.ceil((t - beacon.genesisTime) / beacon.period) + 1));
}

export const revealSlackSeconds = (rule: Pick<RevealRule, "blockTime">, beacon: BeaconClock) => 2 * beacon.period + 2 * Math.max(rule.blockTime, beacon.period);

/** Seconds after the chain's current time the CLI timelocks to, for a delay of `blocks`. */
export const aimSeconds = (blocks: number, rule: Pick<RevealRule, "blockTime">, beacon: BeaconClock) =>
  blocks * rule.blockTime + revealSlackSeconds(rule, beacon) / 2;

export type RevealDelayRejection = { reason: "reveal_too_soon" | "reveal_too_late"; message: string };

/**
 * Judges how long a commitment stayed sealed after its commit block (seconds from that block's
 * timestamp to its round's publication). Null when the delay is within the rule.
 */
export function judgeRevealDelay(sealedSeconds: number, rule: RevealRule, beacon: BeaconClock): RevealDelayRejection | null {
  const slack = revealSlackSeconds(rule, beacon);
  const min = rule.revealBlocks * rule.blockTime;
  const max = rule.maxRevealBlocks * rule.blockTime;
  const sealed = Math.round(sealedSeconds);
  if (!Number.isFinite(sealedSeconds) || sealedSeconds < min - slack) {
    return {
      reason: "reveal_too_soon",
      message: `timelocked to open ${sealed} s after its commit block; validators require at least reveal_blocks × block_time = ${rule.revealBlocks} × ${rule.blockTime} s = ${min} s (less ${slack} s of slack), so that a later copy cannot reveal before the original`,
    };
  }
  if (sealedSeconds > max + slack) {
    return {
      reason: "reveal_too_late",
      message: `timelocked to open ${sealed} s after its commit block; validators accept at most ${rule.maxRevealBlocks} × ${rule.blockTime} s = ${max} s (plus ${slack} s of slack), since later commitments wait for earlier ones to reveal`,
    };
  }
  return null;
}
