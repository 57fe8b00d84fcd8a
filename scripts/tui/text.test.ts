import { describe, expect, test } from "bun:test";
import { charWidth, fit, green, middle, RESET, sanitize, sanitizeCodeLine, stripAnsi, truncate, width } from "./text.ts";

describe("width", () => {
  test("counts terminal columns, not UTF-16 units", () => {
    expect(width("abc")).toBe(3);
    expect(width("日本語")).toBe(6); // CJK: two columns each
    expect(width("🚀x")).toBe(3); // astral emoji: one code point, two columns
    expect(width("e\u0301")).toBe(1); // combining acute accent adds nothing
    expect(width(green("ok"))).toBe(2); // colour codes take no room
    expect(charWidth(0x1b)).toBe(0);
  });
});

describe("truncate and fit", () => {
  test("leaves text that fits alone", () => {
    expect(truncate("hello", 5)).toBe("hello");
    expect(fit("hi", 5)).toBe("hi   ");
    expect(fit("hi", 5, "right")).toBe("   hi");
    expect(fit("hi", 6, "center")).toBe("  hi  ");
  });

  test("cuts with an ellipsis to exactly the width", () => {
    expect(truncate("hello world", 6)).toBe("hello…");
    expect(width(truncate("hello world", 6))).toBe(6);
    expect(truncate("abc", 0)).toBe("");
    expect(truncate("abc", 1)).toBe("…");
  });

  test("never splits a wide character across the edge", () => {
    const t = fit("日本語テキスト", 6);
    expect(width(t)).toBe(6);
    expect(stripAnsi(t)).toBe("日本… "); // 4 columns of text, the ellipsis, one pad: a third CJK char would not fit
  });

  test("keeps colour codes and closes them when cutting", () => {
    const t = truncate(green("abcdefgh"), 4);
    expect(stripAnsi(t)).toBe("abc…");
    expect(t.startsWith("\x1b[32m")).toBe(true);
    expect(t.endsWith(RESET)).toBe(true);
    expect(width(fit(green("abcdefgh"), 4))).toBe(4);
  });
});

describe("middle", () => {
  test("keeps both ends of an identifier", () => {
    const hotkey = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
    const m = middle(hotkey, 11);
    expect(m).toBe("5FHne…694ty");
    expect(width(m)).toBe(11);
    expect(middle("short", 11)).toBe("short");
  });
});

describe("sanitize", () => {
  test("strips terminal escapes and bidi overrides from untrusted text", () => {
    const hostile = "boom\x1b]0;owned\x07\x1b[2J\u202egnp.exe\nnext";
    const s = sanitize(hostile);
    expect(s).not.toContain("\x1b");
    expect(s).not.toContain("\x07");
    expect(s).not.toContain("\u202e");
    expect(s).not.toContain("\n");
    expect(s).toContain("boom");
    expect(s).toContain("next");
  });

  test("code lines expand tabs to tab stops and show controls", () => {
    expect(sanitizeCodeLine("\tx = 1")).toBe("    x = 1");
    expect(sanitizeCodeLine("ab\tc")).toBe("ab  c");
    expect(sanitizeCodeLine("s = '\x1b[31m'")).toBe("s = '\ufffd[31m'");
  });
});
