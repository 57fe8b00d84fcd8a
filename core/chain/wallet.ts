// Hotkeys for signing: from the bittensor wallet layout on disk (as btcli writes it) or from a secret
// URI in the environment. Only unencrypted hotkeys are read; btcli leaves hotkeys unencrypted by default
// and a validator or miner process cannot answer a password prompt. Both of bittensor-wallet's crypto
// types are read: sr25519 (1, the default) and ed25519 (0).
import { existsSync, readFileSync } from "node:fs";
import { ristretto255 } from "@noble/curves/ed25519.js";
import { homedir } from "node:os";
import { join } from "node:path";
import type { KeyringPair } from "@polkadot/keyring/types";
import { hexToU8a, isHex, u8aToHex } from "@polkadot/util";
import { DEV_PHRASE, Keyring } from "@polkadot/keyring";
import { cryptoWaitReady, keyExtractSuri, mnemonicValidate } from "@polkadot/util-crypto";
import type { KeypairType } from "@polkadot/util-crypto/types";
import { z } from "zod";
import { UserError } from "../errors.ts";

/** Bittensor addresses use the generic Substrate ss58 prefix. */
export const SS58_FORMAT = 42;
export const HOTKEY_URI_ENV = "CRUSADES_HOTKEY_URI";

export interface WalletSpec {
  name: string;
  hotkey: string;
  /** Root of the wallets directory; defaults to ~/.bittensor/wallets (or $BT_WALLET_PATH). */
  path?: string;
}

export interface Hotkey {
  pair: KeyringPair;
  ss58: string;
  /** Where the key came from, for messages: a file path or the environment variable's name. */
  origin: string;
  /** The wallet's coldkey address when coldkeypub.txt exists. */
  coldkey: string | null;
}

// btcli's keyfile JSON. Field names are the wallet SDK's; every field is optional because regenerated
// keys may lack the phrase, and we check what is there against what it derives.
const KeyfileJson = z.object({
  secretPhrase: z.string().nullish(),
  secretSeed: z.string().nullish(),
  publicKey: z.string().nullish(),
  accountId: z.string().nullish(),
  ss58Address: z.string().nullish(),
  /** A 64-byte sr25519 secret (schnorrkel key ‖ nonce) or an ed25519 seed; some files carry only this. */
  privateKey: z.string().nullish(),
  /** bittensor-wallet's crypto type: 0 ed25519, 1 sr25519; files from before it existed are sr25519. */
  cryptoType: z.number().int().nullish(),
});

const CRYPTO_TYPES: Record<number, KeypairType> = { 0: "ed25519", 1: "sr25519" };

// Prefixes of the encrypted keyfile formats the wallet SDK has used: NaCl secretbox (current), Ansible
// vault and Fernet (legacy).
const ENCRYPTED_PREFIXES = ["$NACL", "$ANSIBLE_VAULT", "gAAAAA"];

export function walletsRoot(env: Record<string, string | undefined> = process.env): string {
  return env.BT_WALLET_PATH || join(env.HOME || homedir(), ".bittensor", "wallets");
}

export function hotkeyPath(spec: WalletSpec, env: Record<string, string | undefined> = process.env): string {
  return join(spec.path ?? walletsRoot(env), spec.name, "hotkeys", spec.hotkey);
}

function keyring(type: KeypairType = "sr25519"): Keyring {
  return new Keyring({ type, ss58Format: SS58_FORMAT });
}

/** The bytes of a hex field of exactly `length` bytes, else null (bittensor-wallet can write a non-hex secretSeed). */
const hexBytes = (v: string | null | undefined, length: number) => (v && isHex(v) && hexToU8a(v).length === length ? hexToU8a(v) : null);

/**
 * A pair from a 64-byte sr25519 secret as sp-core stores it (schnorrkel `to_bytes`: the canonical key
 * scalar, then the nonce). @polkadot's sr25519 keeps the key multiplied by the cofactor 8 (schnorrkel's
 * "ed25519 bytes"), so the scalar is shifted before the pair is built; the public key is the scalar
 * times the Ristretto base point.
 */
function sr25519FromPrivateKey(secret: Uint8Array, path: string): KeyringPair {
  let scalar = 0n;
  for (let i = 31; i >= 0; i--) scalar = (scalar << 8n) | BigInt(secret[i]!);
  let publicKey: Uint8Array;
  try {
    publicKey = ristretto255.Point.BASE.multiply(scalar).toBytes();
  } catch {
    throw new UserError(`hotkey file ${path}: its privateKey is not an sr25519 secret key (the key scalar is out of range)`, "bad_key");
  }
  const shifted = new Uint8Array(64);
  let times8 = scalar << 3n;
  for (let i = 0; i < 32; i++, times8 >>= 8n) shifted[i] = Number(times8 & 0xffn);
  shifted.set(secret.subarray(32), 32);
  return keyring().addFromPair({ publicKey, secretKey: shifted });
}

/** A pair from a mnemonic, a `//Dev` URI, a hex seed, or any of those with a derivation path. */
export async function pairFromUri(uri: string, origin = "secret URI", type: KeypairType = "sr25519"): Promise<KeyringPair> {
  await cryptoWaitReady();
  try {
    // The keyring would quietly turn any short string into a seed, so a mistyped mnemonic would sign
    // as a stranger; accept only a dev URI, a valid mnemonic or a 32-byte hex seed.
    const { phrase } = keyExtractSuri(uri.trim().startsWith("//") ? `${DEV_PHRASE}${uri.trim()}` : uri.trim());
    const seedLike = isHex(phrase) && hexToU8a(phrase).length === 32;
    if (phrase !== DEV_PHRASE && !seedLike && !mnemonicValidate(phrase)) throw new Error("invalid mnemonic");
    return keyring(type).addFromUri(uri.trim());
  } catch (e) {
    throw new UserError(`${origin}: not a usable mnemonic, //URI or 0x seed (${(e as Error).message})`, "bad_key");
  }
}

/** Reads a btcli hotkey file; the error says exactly what is wrong with it and what to do. */
export async function loadHotkeyFile(path: string): Promise<KeyringPair> {
  if (!existsSync(path)) {
    throw new UserError(
      `no hotkey file at ${path}: create it with \`btcli wallet new_hotkey\`, check --wallet.name/--wallet.hotkey, or set ${HOTKEY_URI_ENV}`,
      "missing_key",
    );
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "EISDIR" ? "is a directory, not a hotkey file" : code === "EACCES" ? "is not readable by this user" : `cannot be read (${(e as Error).message})`;
    throw new UserError(`hotkey file ${path} ${why}: check --wallet.name/--wallet.hotkey/--wallet.path, or set ${HOTKEY_URI_ENV}`, "bad_key");
  }
  if (ENCRYPTED_PREFIXES.some((p) => text.startsWith(p))) {
    throw new UserError(
      `hotkey file ${path} is encrypted; Crusades signs without prompting, so use an unencrypted hotkey or pass its mnemonic in ${HOTKEY_URI_ENV}`,
      "encrypted_key",
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UserError(`hotkey file ${path} is not JSON (expected the btcli keyfile format)`, "bad_key");
  }
  const parsed = KeyfileJson.safeParse(json);
  if (!parsed.success) throw new UserError(`hotkey file ${path} is not a btcli keyfile object`, "bad_key");
  const file = parsed.data;

  const type = CRYPTO_TYPES[file.cryptoType ?? 1];
  if (!type) {
    throw new UserError(
      `hotkey file ${path} declares cryptoType ${file.cryptoType}; Crusades reads 0 (ed25519) and 1 (sr25519)`,
      "bad_key",
    );
  }

  await cryptoWaitReady();
  let pair: KeyringPair;
  const seed = hexBytes(file.secretSeed, 32);
  if (file.secretPhrase) {
    pair = await pairFromUri(file.secretPhrase, `secretPhrase in ${path}`, type);
  } else if (seed) {
    pair = keyring(type).addFromSeed(seed);
  } else if (type === "sr25519" && hexBytes(file.privateKey, 64)) {
    pair = sr25519FromPrivateKey(hexBytes(file.privateKey, 64)!, path);
  } else if (type === "ed25519" && hexBytes(file.privateKey, 32)) {
    // bittensor-wallet's ed25519 private key is the 32-byte seed itself.
    pair = keyring(type).addFromSeed(hexBytes(file.privateKey, 32)!);
  } else {
    const wanted = type === "sr25519" ? "a 64-byte privateKey" : "a 32-byte privateKey";
    throw new UserError(`hotkey file ${path} (${type}) has no secretPhrase, no 32-byte secretSeed and not ${wanted}`, "bad_key");
  }

  // A file whose secret does not derive its own address is corrupt or hand-edited: signing with it
  // would commit under a hotkey the owner does not expect.
  const declared = file.ss58Address ?? null;
  const declaredKey = (file.publicKey ?? file.accountId ?? "").toLowerCase();
  const actualKey = u8aToHex(pair.publicKey, -1, false);
  if ((declared && declared !== pair.address) || (declaredKey && declaredKey.replace(/^0x/, "") !== actualKey)) {
    throw new UserError(
      `hotkey file ${path}: its secret derives ${pair.address} as ${type}, but the file declares ${declared ?? declaredKey}`,
      "bad_key",
    );
  }
  return pair;
}

/** The wallet's coldkey address from coldkeypub.txt, or null when the file is absent or unreadable. */
export function readColdkeyPub(spec: WalletSpec, env: Record<string, string | undefined> = process.env): string | null {
  const path = join(spec.path ?? walletsRoot(env), spec.name, "coldkeypub.txt");
  if (!existsSync(path)) return null;
  try {
    const json = JSON.parse(readFileSync(path, "utf8")) as { ss58Address?: unknown };
    return typeof json.ss58Address === "string" ? json.ss58Address : null;
  } catch {
    return null;
  }
}

/**
 * The hotkey to sign with. The environment variable wins over the wallet files, so containers and CI can
 * inject a key without writing it to disk.
 */
export async function loadHotkey(spec: WalletSpec, env: Record<string, string | undefined> = process.env): Promise<Hotkey> {
  const uri = env[HOTKEY_URI_ENV];
  if (uri && uri.trim()) {
    const pair = await pairFromUri(uri, HOTKEY_URI_ENV);
    return { pair, ss58: pair.address, origin: `$${HOTKEY_URI_ENV}`, coldkey: null };
  }
  const path = hotkeyPath(spec, env);
  const pair = await loadHotkeyFile(path);
  return { pair, ss58: pair.address, origin: path, coldkey: readColdkeyPub(spec, env) };
}
