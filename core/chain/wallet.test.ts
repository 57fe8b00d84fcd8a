import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keyring } from "@polkadot/keyring";
import { u8aToHex } from "@polkadot/util";
import { cryptoWaitReady, mnemonicGenerate, mnemonicToMiniSecret, signatureVerify } from "@polkadot/util-crypto";
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

  // Files written by bittensor-wallet 4.1.1 (the Python tool), kept verbatim.
  const BITTENSOR_WALLET = {
    // set_hotkey(Keypair.create_from_uri("//Miner1")): only the 64-byte sp-core secret.
    srPrivateKeyOnly: `{"publicKey":"0xa64a73d8ce608b2df9c1480754edb78fbf322c51027f149caeae087b7c980a08","cryptoType":1,"accountId":"0xa64a73d8ce608b2df9c1480754edb78fbf322c51027f149caeae087b7c980a08","privateKey":"0xa688e9e9e83e450e6365ac4b22094df343667d98d820710c5ca6a085a1a46a08a70822a0369378529aae00fc04593b486d56d51a3095fc158563d9ed4aeb0552","ss58Address":"5FpjvVN9fkYjNvNwzZYxLFNz2UVDmeZ8ZvD47A1dLMnsVgo6"}`,
    // set_hotkey(Keypair.create_from_seed("0x11…11")): the tool writes the seed's bytes as characters.
    srBrokenSeed: String.raw`{"cryptoType":1,"accountId":"0x50780547322a1ceba67ea8c552c9bc6c686f8698ac9a8cafab7cd15a1db19859","publicKey":"0x50780547322a1ceba67ea8c552c9bc6c686f8698ac9a8cafab7cd15a1db19859","secretSeed":"0x\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011\u0011","privateKey":"0x704b72419b89bab3a4632685428901bf5715b44e40ec0df50f01fdc1553bf60b092539815e61663c7f9c4c9c377346f5d2936875bd760f0ac5c5f4f6e78a6d76","ss58Address":"5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi"}`,
    // create_new_hotkey(crypto_type=0).
    edPhrase: `{"cryptoType":0,"secretSeed":"0x4185b3fd0e9e2e0b74ca0da33e9a9a94f5e35f54d1a7d1c3d534f44b4e67fb5e","privateKey":"0x4185b3fd0e9e2e0b74ca0da33e9a9a94f5e35f54d1a7d1c3d534f44b4e67fb5e","accountId":"0x9d761e0308e3e2a8547fe19f504b46d345759b4e826ddbe426c9abe207d81566","ss58Address":"5FdATpUpSG2DNkMeFgQaMXf9BtEonpQsFN32hHDK2f2QLovu","publicKey":"0x9d761e0308e3e2a8547fe19f504b46d345759b4e826ddbe426c9abe207d81566","secretPhrase":"visit humor prefer cream manual canvas edit inform hunt salad tourist tenant"}`,
    // set_hotkey(Keypair.create_from_uri("//Miner1", crypto_type=0)).
    edPrivateKeyOnly: `{"cryptoType":0,"publicKey":"0x4884226f2b3e0d68505a37a18c15472608ab56ea51a791f17eab613d8974c584","privateKey":"0x4e3ac33146d2f2beb908608802ed60ffb7822fedbe7fdda51d6c9eb96520f404","accountId":"0x4884226f2b3e0d68505a37a18c15472608ab56ea51a791f17eab613d8974c584","ss58Address":"5DhnZG2Rzhmk2QNjSiB69HuHb7fS1mmaGJE8sanvEWkzvUcn"}`,
  };

  test("bittensor-wallet's sr25519 and ed25519 files load as the key they declare, and sign for it", async () => {
    const h = tempHome();
    const msg = new TextEncoder().encode("crusades");
    for (const [name, text] of Object.entries(BITTENSOR_WALLET)) {
      writeBtcliHotkey(h, "bt", name, text);
      const declared = JSON.parse(text) as { ss58Address: string; cryptoType: number };
      const key = await loadHotkey({ name: "bt", hotkey: name }, { HOME: h });
      expect(key.ss58).toBe(declared.ss58Address);
      expect(key.pair.type).toBe(declared.cryptoType === 0 ? "ed25519" : "sr25519");
      expect(signatureVerify(msg, key.pair.sign(msg), declared.ss58Address).isValid).toBe(true);
    }
    // The same dev URI through @polkadot's own derivation gives the same accounts.
    const miner1 = (type: "sr25519" | "ed25519") => new Keyring({ type, ss58Format: 42 }).addFromUri("//Miner1").address;
    expect(JSON.parse(BITTENSOR_WALLET.srPrivateKeyOnly).ss58Address).toBe(miner1("sr25519"));
    expect(JSON.parse(BITTENSOR_WALLET.edPrivateKeyOnly).ss58Address).toBe(miner1("ed25519"));
  });

  test("a privateKey that does not derive the declared key, an ed25519 file read as sr25519, or an unknown crypto type is refused", async () => {
    const h = tempHome();
    const sr = JSON.parse(BITTENSOR_WALLET.srPrivateKeyOnly);
    const ed = JSON.parse(BITTENSOR_WALLET.edPhrase);
    const other = btcliFields(mnemonicGenerate(12));
    writeBtcliHotkey(h, "w", "swapped", { ...sr, ss58Address: other.pair.address, publicKey: u8aToHex(other.pair.publicKey), accountId: u8aToHex(other.pair.publicKey) });
    writeBtcliHotkey(h, "w", "edAsSr", { ...ed, cryptoType: 1 });
    writeBtcliHotkey(h, "w", "ecdsa", { ...sr, cryptoType: 2 });
    const swapped = await loadHotkey({ name: "w", hotkey: "swapped" }, { HOME: h }).catch((e) => e);
    expect(swapped.code).toBe("bad_key");
    expect(swapped.message).toContain(sr.ss58Address);
    const edAsSr = await loadHotkey({ name: "w", hotkey: "edAsSr" }, { HOME: h }).catch((e) => e);
    expect(edAsSr.message).toContain("as sr25519");
    const ecdsa = await loadHotkey({ name: "w", hotkey: "ecdsa" }, { HOME: h }).catch((e) => e);
    expect(ecdsa.code).toBe("bad_key");
    expect(ecdsa.message).toContain("cryptoType 2");
  });
});
