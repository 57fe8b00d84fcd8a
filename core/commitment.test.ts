import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { beaconKeygen, encrypt, QUICKNET } from "./timelock/index.ts";
import {
  aimSeconds,
  buildCommitment,
  codeHash,
  firstRoundFrom,
  judgeRevealDelay,
  MAX_COMMITMENT_BYTES,
  MAX_TIMELOCK_CIPHERTEXT_BYTES,
  parseCommitment,
  revealSlackSeconds,
  roundPublishedAt,
} from "./commitment.ts";

const CODE = "def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n";
const HASH = createHash("sha256").update(CODE).digest("hex").slice(0, 32);

/** The plaintext the chain timelocks: the SCALE string (compact length, then UTF-8). */
function scaleText(text: string): Uint8Array {
  const body = new TextEncoder().encode(text);
  const len = body.length;
  const prefix = len < 64 ? [len << 2] : [((len << 2) | 1) & 0xff, (len << 2) >> 8];
  return new Uint8Array([...prefix, ...body]);
}

describe("buildCommitment", () => {
  test("is the first 32 hex of sha256(code), a colon, and the URL", () => {
    const c = buildCommitment(CODE, "https://example.com/train.py");
    expect(c).toBe(`${HASH}:https://example.com/train.py`);
    expect(codeHash(new TextEncoder().encode(CODE))).toBe(HASH);
  });

  test("shortens gist URLs before committing", () => {
    const c = buildCommitment(CODE, "https://gist.github.com/alice/0123456789abcdef0123456789abcdef");
    expect(c).toBe(`${HASH}:https://gist.github.com/0123456789abcdef0123456789abcdef`);
  });

  test("the largest accepted commitment really fits the chain's ciphertext bound, one byte more would not", () => {
    const prefix = `${HASH}:https://example.com/`;
    const url = "https://example.com/" + "a".repeat(MAX_COMMITMENT_BYTES - prefix.length);
    const text = buildCommitment(CODE, url);
    expect(new TextEncoder().encode(text).length).toBe(MAX_COMMITMENT_BYTES);
    const { publicKey } = beaconKeygen(new Uint8Array(32).fill(7));
    expect(encrypt(scaleText(text), 1000n, publicKey).length).toBe(MAX_TIMELOCK_CIPHERTEXT_BYTES);
    expect(encrypt(scaleText(text + "a"), 1000n, publicKey).length).toBe(MAX_TIMELOCK_CIPHERTEXT_BYTES + 1);
  });

  test("an oversize commitment is refused before sending, with the sizes in the message", () => {
    const url = "https://example.com/" + "a".repeat(MAX_COMMITMENT_BYTES);
    expect(() => buildCommitment(CODE, url)).toThrow(/over the chain's limit of 778/);
    try {
      buildCommitment(CODE, url);
    } catch (e) {
      expect((e as { code: string }).code).toBe("oversize");
    }
  });

  test("non-http URLs are refused", () => {
    expect(() => buildCommitment(CODE, "ftp://example.com/train.py")).toThrow(/http\(s\)/);
    expect(() => buildCommitment(CODE, "not a url")).toThrow(/not a URL/);
  });
});

describe("parseCommitment", () => {
  test("reads back what buildCommitment wrote", () => {
    const r = parseCommitment(buildCommitment(CODE, "https://example.com/train.py"));
    expect(r).toEqual({ ok: true, commitment: { codeHash: HASH, url: "https://example.com/train.py", form: "hash_url" } });
  });

  test("reads the legacy JSON form, which carries no hash", () => {
    const r = parseCommitment('{"code_url":"https://gist.githubusercontent.com/a/b/raw"}');
    expect(r).toEqual({ ok: true, commitment: { codeHash: null, url: "https://gist.githubusercontent.com/a/b/raw", form: "legacy_json" } });
  });

  test("trims whitespace and lowercases the hash", () => {
    const r = parseCommitment(`  ${HASH.toUpperCase()}:https://x.org/t.py\n`);
    expect(r.ok && r.commitment.codeHash).toBe(HASH);
  });

  test.each([
    ["", "malformed"],
    ["hello", "malformed"],
    [`${HASH.slice(0, 31)}:https://x.org/t.py`, "malformed"],
    [`${HASH}:https://x.org/a b.py`, "malformed"],
    ["{not json", "malformed"],
    ['{"url":"https://x.org"}', "malformed"],
    ['{"code_url":42}', "malformed"],
    ['{"code_url":"file:///etc/passwd"}', "bad_url"],
    [`${HASH}:javascript:alert(1)`, "bad_url"],
    [`${HASH}:ftp://x.org/t.py`, "bad_url"],
    ["LONG", "oversize"],
  ])("%j is rejected as %s", (given, reason) => {
    const data = given === "LONG" ? `${HASH}:https://x.org/${"a".repeat(800)}` : given;
    const r = parseCommitment(data);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toBe(reason as "malformed");
      expect(r.message.length).toBeGreaterThan(0);
    }
  });
});

describe("the reveal delay", () => {
  const rule = { revealBlocks: 100, maxRevealBlocks: 400, blockTime: 12 };

  test("firstRoundFrom gives the first round published at or after a time, never one before it", () => {
    for (const t of [QUICKNET.genesisTime + 0.5, 1_750_000_000, 1_750_000_001, 1_750_000_002.9, 1_750_000_003]) {
      const round = firstRoundFrom(t, QUICKNET);
      expect(roundPublishedAt(round, QUICKNET)).toBeGreaterThanOrEqual(t);
      expect(roundPublishedAt(round - 1n, QUICKNET)).toBeLessThan(t);
    }
  });

  test("sealed from the minimum less the slack to the maximum plus it; either side is rejected with its reason", () => {
    const slack = revealSlackSeconds(rule, QUICKNET);
    expect(slack).toBe(2 * 3 + 2 * 12);
    expect(judgeRevealDelay(1200 - slack, rule, QUICKNET)).toBeNull();
    expect(judgeRevealDelay(4800 + slack, rule, QUICKNET)).toBeNull();
    expect(judgeRevealDelay(1200 - slack - 1, rule, QUICKNET)?.reason).toBe("reveal_too_soon");
    expect(judgeRevealDelay(-3600, rule, QUICKNET)?.message).toContain("at least reveal_blocks × block_time = 100 × 12 s = 1200 s");
    expect(judgeRevealDelay(4800 + slack + 1, rule, QUICKNET)?.reason).toBe("reveal_too_late");
    expect(judgeRevealDelay(Number.NaN, rule, QUICKNET)?.reason).toBe("reveal_too_soon");
  });

  test("the CLI's aim lands inside the window even when its transaction waits 1.5× the slack", () => {
    const slack = revealSlackSeconds(rule, QUICKNET);
    const aim = aimSeconds(rule.revealBlocks, rule, QUICKNET);
    expect(judgeRevealDelay(aim - 1.5 * slack, rule, QUICKNET)).toBeNull();
    expect(judgeRevealDelay(aim + QUICKNET.period, rule, QUICKNET)).toBeNull();
  });
});
