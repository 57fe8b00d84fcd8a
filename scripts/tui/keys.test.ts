import { describe, expect, test } from "bun:test";
import { decodeKeys } from "./keys.ts";

describe("decodeKeys", () => {
  test("printable keys, several per read", () => {
    expect(decodeKeys("jjk1G")).toEqual(["j", "j", "k", "1", "G"]);
  });

  test("control keys", () => {
    expect(decodeKeys("\r\n\t\x03\x7f ")).toEqual(["enter", "enter", "tab", "ctrl-c", "backspace", "space"]);
  });

  test("arrows in normal and application cursor mode, with modifiers", () => {
    expect(decodeKeys("\x1b[A\x1b[B\x1b[C\x1b[D")).toEqual(["up", "down", "right", "left"]);
    expect(decodeKeys("\x1bOA\x1bOD")).toEqual(["up", "left"]);
    expect(decodeKeys("\x1b[1;5C")).toEqual(["right"]);
  });

  test("paging keys and shift-tab", () => {
    expect(decodeKeys("\x1b[5~\x1b[6~\x1b[H\x1b[F\x1b[1~\x1b[4~\x1b[Z")).toEqual(["pageup", "pagedown", "home", "end", "home", "end", "backtab"]);
  });

  test("a lone escape is Escape; escape before a letter is Escape then the letter", () => {
    expect(decodeKeys("\x1b")).toEqual(["escape"]);
    expect(decodeKeys("\x1bb")).toEqual(["escape", "b"]);
  });

  test("unknown sequences are consumed whole, not typed as letters", () => {
    expect(decodeKeys("\x1b[200~q")).toEqual(["q"]);
    expect(decodeKeys("\x1b[99X")).toEqual([]);
  });

  test("non-ASCII characters arrive as themselves", () => {
    expect(decodeKeys("é🚀")).toEqual(["é", "🚀"]);
  });
});
