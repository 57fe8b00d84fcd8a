import { describe, expect, test } from "bun:test";
import { memoryLogger } from "../../core/log.ts";
import { logStream } from "./log-stream.ts";

describe("log stream", () => {
  test("forwards whole lines from both streams, joining lines split across chunks", () => {
    const log = memoryLogger();
    const s = logStream(log, 10_000);
    s.write("stdout", "hel");
    s.write("stdout", new TextEncoder().encode("lo\nwor"));
    s.write("stderr", "oops\r\n");
    s.end();
    expect(log.lines.map((l) => l.replace(/^\S+ \S+\s+/, ""))).toEqual(["hello  stream=stdout", "oops  stream=stderr", "wor  stream=stdout"]);
  });

  test("stops forwarding at the cap with one warning, but keeps the tail for error messages", () => {
    const log = memoryLogger();
    const s = logStream(log, 100);
    for (let i = 0; i < 50; i++) s.write("stderr", `line ${i}\n`);
    s.end();
    expect(log.lines.filter((l) => l.includes("stream=stderr")).length).toBeLessThan(20);
    expect(log.lines.filter((l) => l.includes("exceeded 100 bytes")).length).toBe(1);
    expect(s.tail()).toContain("line 49");
    expect(s.bytes).toBe(Array.from({ length: 50 }, (_, i) => `line ${i}\n`.length).reduce((a, b) => a + b));
  });

  test("an endless line without newlines is cut, not buffered without bound", () => {
    const log = memoryLogger();
    const s = logStream(log, 1_000_000);
    for (let i = 0; i < 100; i++) s.write("stdout", "x".repeat(1000));
    expect(log.lines.length).toBeGreaterThan(10);
    expect(Math.max(...log.lines.map((l) => l.length))).toBeLessThan(5000);
  });
});
