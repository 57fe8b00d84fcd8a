import { describe, expect, test } from "bun:test";
import { createHmac, randomBytes } from "node:crypto";
import { fingerprint, verifyHostKey } from "./known-hosts.ts";

const key = randomBytes(51);
const other = randomBytes(51);
const b64 = (b: Buffer) => b.toString("base64");

describe("known_hosts verification", () => {
  test("a listed key is known; another key for the same host is a mismatch; an absent host is unknown", () => {
    const file = `# comment\n[10.0.0.5]:2222 ssh-ed25519 ${b64(key)} gpu-box\n`;
    expect(verifyHostKey(file, "10.0.0.5", 2222, key).kind).toBe("known");
    expect(verifyHostKey(file, "10.0.0.5", 2222, other).kind).toBe("mismatch");
    expect(verifyHostKey(file, "10.0.0.5", 22, key).kind).toBe("unknown");
    expect(verifyHostKey("", "10.0.0.5", 2222, key).kind).toBe("unknown");
  });

  test("hashed host names, patterns, negations and revocations", () => {
    const salt = randomBytes(20);
    const hashed = `|1|${b64(salt)}|${createHmac("sha1", salt).update("gpu.example").digest("base64")}`;
    expect(verifyHostKey(`${hashed} ssh-ed25519 ${b64(key)}`, "gpu.example", 22, key).kind).toBe("known");
    expect(verifyHostKey(`${hashed} ssh-ed25519 ${b64(key)}`, "other.example", 22, key).kind).toBe("unknown");
    expect(verifyHostKey(`*.example,!bad.example ssh-ed25519 ${b64(key)}`, "gpu.example", 22, key).kind).toBe("known");
    expect(verifyHostKey(`*.example,!bad.example ssh-ed25519 ${b64(key)}`, "bad.example", 22, key).kind).toBe("unknown");
    expect(verifyHostKey(`@revoked * ssh-ed25519 ${b64(key)}\ngpu.example ssh-ed25519 ${b64(key)}`, "gpu.example", 22, key).kind).toBe("revoked");
  });

  test("fingerprints look like ssh-keygen's", () => {
    expect(fingerprint(key)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});
