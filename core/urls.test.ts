import { describe, expect, test } from "bun:test";
import { normalizeCodeUrl, shortenGistUrl } from "./urls.ts";

const ID = "aa5a315d61ae9438b18d1f2e5a9c03b7";
const REV = "0123456789abcdef0123456789abcdef01234567";

describe("normalizeCodeUrl", () => {
  const cases: [string, string][] = [
    [`https://gist.github.com/alice/${ID}`, `https://gist.githubusercontent.com/alice/${ID}/raw`],
    [`https://gist.github.com/alice/${ID}/`, `https://gist.githubusercontent.com/alice/${ID}/raw`],
    [`https://GIST.GitHub.com/alice/${ID}#file-train-py`, `https://gist.githubusercontent.com/alice/${ID}/raw`],
    [`https://gist.github.com/alice/${ID}?foo=1`, `https://gist.githubusercontent.com/alice/${ID}/raw`],
    [`https://gist.github.com/alice/${ID}/${REV}`, `https://gist.githubusercontent.com/alice/${ID}/raw/${REV}`],
    [`https://gist.github.com/alice/${ID}/raw/${REV}/train.py`, `https://gist.githubusercontent.com/alice/${ID}/raw/${REV}/train.py`],
    [`https://gist.github.com/${ID}`, `https://gist.github.com/${ID}/raw`],
    [`http://gist.github.com/${ID}`, `https://gist.github.com/${ID}/raw`],
    [`https://github.com/o/r/blob/main/src/train.py`, `https://raw.githubusercontent.com/o/r/main/src/train.py`],
    [`https://github.com/o/r/blob/${REV}/train.py?plain=1#L10`, `https://raw.githubusercontent.com/o/r/${REV}/train.py`],
    [`https://www.github.com/o/r/raw/main/train.py`, `https://raw.githubusercontent.com/o/r/main/train.py`],
  ];
  for (const [input, want] of cases) test(input, () => expect(normalizeCodeUrl(input)).toBe(want));

  test("raw URLs and unknown hosts are left exactly as given", () => {
    for (const url of [
      `https://gist.githubusercontent.com/alice/${ID}/raw/${REV}/train.py`,
      `https://raw.githubusercontent.com/o/r/main/train.py`,
      `https://example.com/code/train.py?v=2`,
      `https://github.com/o/r/tree/main/src`, // a folder: the fetcher refuses the HTML page it serves
      `https://gist.github.com/alice/${ID}/revisions`,
      `ftp://gist.github.com/alice/${ID}`,
      `not a url`,
    ]) {
      expect(normalizeCodeUrl(url)).toBe(url);
    }
  });

  test("is idempotent", () => {
    for (const [input] of cases) {
      const once = normalizeCodeUrl(input);
      expect(normalizeCodeUrl(once)).toBe(once);
    }
  });
});

describe("shortenGistUrl", () => {
  test("page, raw and revision URLs all shrink to the id alone", () => {
    for (const url of [
      `https://gist.github.com/alice/${ID}`,
      `https://gist.github.com/a-very-long-user-name-of-thirty-nine-c/${ID}/`,
      `https://gist.github.com/alice/${ID}/${REV}`,
      `https://gist.githubusercontent.com/alice/${ID}/raw`,
      `https://gist.githubusercontent.com/alice/${ID}/raw/${REV}`,
      `https://gist.github.com/${ID}/raw`,
      `https://gist.github.com/${ID}`,
    ]) {
      expect(shortenGistUrl(url)).toBe(`https://gist.github.com/${ID}`);
    }
  });

  test("a named file is kept; its revision is dropped", () => {
    expect(shortenGistUrl(`https://gist.githubusercontent.com/alice/${ID}/raw/${REV}/train.py`)).toBe(
      `https://gist.githubusercontent.com/alice/${ID}/raw/train.py`,
    );
    expect(shortenGistUrl(`https://gist.github.com/${ID}/raw/${REV}/train.py`)).toBe(`https://gist.github.com/${ID}/raw/train.py`);
  });

  test("is shorter than the anchor's user/id form and fits a 128-byte commitment beside its hash", () => {
    const anchor = `https://gist.github.com/a-very-long-user-name-of-thirty-nine-c/${ID}`;
    const short = shortenGistUrl(anchor);
    expect(short.length).toBeLessThan(anchor.length - 30);
    const commitment = `${"f".repeat(32)}:${99_999_999}:${9999}:${short}`;
    expect(new TextEncoder().encode(commitment).length).toBeLessThanOrEqual(128);
  });

  test("the short form normalizes back to a fetchable raw URL", () => {
    expect(normalizeCodeUrl(shortenGistUrl(`https://gist.github.com/alice/${ID}`))).toBe(`https://gist.github.com/${ID}/raw`);
  });

  test("non-gist URLs and lookalike hosts are left unchanged", () => {
    for (const url of [
      "https://raw.githubusercontent.com/o/r/main/train.py",
      `https://gist.github.com.evil.example/alice/${ID}`,
      `https://evilgist.github.com/alice/${ID}`,
      "https://gist.github.com/alice/not-a-gist-id",
      "garbage",
    ]) {
      expect(shortenGistUrl(url)).toBe(url);
    }
  });
});
