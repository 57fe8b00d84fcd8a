import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keyring } from "@polkadot/keyring";
import { u8aToHex } from "@polkadot/util";
import { cryptoWaitReady, mnemonicGenerate, mnemonicToMiniSecret } from "@polkadot/util-crypto";
import { HOTKEY_URI_ENV, loadHotkey, hotkeyPath } from "./wallet.ts";

let home: string;
const dirs: string[] = [];
afterEach(() => {
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});
beforeAll(async () => {
  await cryptoWaitReady();
});

function tempHome(): string {
  home = mkdtempSync(join(tmpdir(), "crusades-wallet-"));
  dirs.push(home);
  return home;
}

/** Writes a hotkey file where btcli puts it (a string is written verbatim). */
function writeBtcliHotkey(homeDir: string, name: string, hotkey: string, fields: Record<string, unknown> | string) {
  const dir = join(homeDir, ".bittensor", "wallets", name, "hotkeys");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, hotkey), typeof fields === "string" ? fields : JSON.stringify(fields));
}

function btcliFields(mnemonic: string) {
  const pair = new Keyring({ type: "sr25519", ss58Format: 42 }).addFromUri(mnemonic);
  const seed = u8aToHex(mnemonicToMiniSecret(mnemonic));
  return {
    pair,
    json: {
      accountId: u8aToHex(pair.publicKey),
      publicKey: u8aToHex(pair.publicKey),
      secretPhrase: mnemonic,
      secretSeed: seed,
      ss58Address: pair.address,
    },
  };
}

describe("loadHotkey", () => {
  test("reads a btcli hotkey file by its secret phrase and the coldkey from coldkeypub.txt", async () => {
    const h = tempHome();
    const { pair, json } = btcliFields(mnemonicGenerate(12));
    writeBtcliHotkey(h, "miner", "hk1", json);
    const cold = new Keyring({ type: "sr25519", ss58Format: 42 }).addFromUri("//Cold");
    writeFileSync(
      join(h, ".bittensor", "wallets", "miner", "coldkeypub.txt"),
      JSON.stringify({ accountId: u8aToHex(cold.publicKey), publicKey: u8aToHex(cold.publicKey), ss58Address: cold.address }),
    );
    const key = await loadHotkey({ name: "miner", hotkey: "hk1" }, { HOME: h });
    expect(key.ss58).toBe(pair.address);
    expect(key.coldkey).toBe(cold.address);
    expect(key.origin).toBe(hotkeyPath({ name: "miner", hotkey: "hk1" }, { HOME: h }));
    // The loaded pair really signs for that address.
    const msg = new TextEncoder().encode("crusades");
    expect(pair.verify(msg, key.pair.sign(msg), pair.publicKey)).toBe(true);
  });

  test("a file with only the secret seed derives the same key as its phrase", async () => {
    const h = tempHome();
    const { pair, json } = btcliFields(mnemonicGenerate(12));
    writeBtcliHotkey(h, "w", "seedonly", { ...json, secretPhrase: null });
    const key = await loadHotkey({ name: "w", hotkey: "seedonly" }, { HOME: h });
    expect(key.ss58).toBe(pair.address);
  });

  test("a missing file names the path and the ways out", async () => {
    const h = tempHome();
    const err = await loadHotkey({ name: "nobody", hotkey: "default" }, { HOME: h }).catch((e) => e);
    expect(err.code).toBe("missing_key");
    expect(err.message).toContain(join(h, ".bittensor", "wallets", "nobody", "hotkeys", "default"));
    expect(err.message).toContain(HOTKEY_URI_ENV);
  });

  test("an encrypted keyfile is refused with a clear reason", async () => {
    const h = tempHome();
    writeBtcliHotkey(h, "w", "locked", "$NACL" + "x".repeat(80));
    const err = await loadHotkey({ name: "w", hotkey: "locked" }, { HOME: h }).catch((e) => e);
    expect(err.code).toBe("encrypted_key");
    expect(err.message).toContain("encrypted");
  });

  test("a file whose secret does not match its declared address is refused", async () => {
    const h = tempHome();
    const a = btcliFields(mnemonicGenerate(12));
    const b = btcliFields(mnemonicGenerate(12));
    writeBtcliHotkey(h, "w", "mixed", { ...a.json, ss58Address: b.pair.address });
    const err = await loadHotkey({ name: "w", hotkey: "mixed" }, { HOME: h }).catch((e) => e);
    expect(err.code).toBe("bad_key");
    expect(err.message).toContain(b.pair.address);
  });

  test("garbage and secret-less files are refused", async () => {
    const h = tempHome();
    writeBtcliHotkey(h, "w", "junk", "not json at all");
    writeBtcliHotkey(h, "w", "empty", { ss58Address: "5Grw" });
    expect((await loadHotkey({ name: "w", hotkey: "junk" }, { HOME: h }).catch((e) => e)).message).toContain("not JSON");
    expect((await loadHotkey({ name: "w", hotkey: "empty" }, { HOME: h }).catch((e) => e)).message).toContain("secretSeed");
  });

  test("the environment URI wins over wallet files", async () => {
    const h = tempHome();
    const key = await loadHotkey({ name: "absent", hotkey: "absent" }, { HOME: h, [HOTKEY_URI_ENV]: "//Bob" });
    expect(key.ss58).toBe(new Keyring({ type: "sr25519", ss58Format: 42 }).addFromUri("//Bob").address);
    const bad = await loadHotkey({ name: "a", hotkey: "a" }, { HOME: h, [HOTKEY_URI_ENV]: "not a valid uri" }).catch((e) => e);
    expect(bad.code).toBe("bad_key");
  });
});
