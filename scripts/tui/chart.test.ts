import { describe, expect, test } from "bun:test";
import { BrailleCanvas, pixelRow, renderChart, sampleSteps, yRange } from "./chart.ts";
import { stripAnsi, width } from "./text.ts";

const H = 3_600_000;

describe("scaling", () => {
  test("the range pads the data by 5% each side", () => {
    expect(yRange([1000, 2000])).toEqual({ lo: 950, hi: 2050 });
  });

  test("a flat series still gets a range: ±10%, or ±1 around zero", () => {
    expect(yRange([500, 500])).toEqual({ lo: 450, hi: 550 });
    expect(yRange([0])).toEqual({ lo: -1, hi: 1 });
  });

  test("pixel rows run from the top (hi) to the bottom (lo) and clamp", () => {
    expect(pixelRow(100, 0, 100, 12)).toBe(0);
    expect(pixelRow(0, 0, 100, 12)).toBe(11);
    expect(pixelRow(50, 0, 100, 11)).toBe(5);
    expect(pixelRow(1e9, 0, 100, 12)).toBe(0);
    expect(pixelRow(-5, 0, 100, 12)).toBe(11);
  });

  test("the step series holds each value until the next change, and is empty before the first", () => {
    const pts = [
      { t: 10, v: 1 },
      { t: 30, v: 2 },
    ];
    expect(sampleSteps(pts, 0, 40, 5)).toEqual([null, 1, 1, 2, 2]);
    expect(sampleSteps([...pts].reverse(), 0, 40, 5)).toEqual([null, 1, 1, 2, 2]); // order does not matter
  });
});

describe("braille canvas", () => {
  test("dots map to the braille bits of their cell", () => {
    const c = new BrailleCanvas(2, 1);
    c.set(0, 0); // top-left dot of cell 0
    c.set(3, 3); // bottom-right dot of cell 1
    expect(stripAnsi(c.render()[0]!)).toBe("\u2801\u2880");
    c.set(99, 99); // off the canvas: ignored
    expect(stripAnsi(c.render()[0]!)).toBe("\u2801\u2880");
  });
});

describe("renderChart", () => {
  const now = Date.UTC(2025, 5, 1, 12);
  const points = [
    { t: now - 72 * H, v: 1000 },
    { t: now - 48 * H, v: 1200 },
    { t: now - 10 * H, v: 1495 },
  ];
  const dotsIn = (line: string) => [...stripAnsi(line)].filter((ch) => ch >= "\u2801" && ch <= "\u28ff").length;

  test("every line has exactly the requested width, with height + 2 lines", () => {
    for (const [w, h] of [
      [40, 3],
      [78, 4],
      [158, 12],
    ] as const) {
      const lines = renderChart({ points, now, target: 1495 * 1.01, width: w, height: h });
      expect(lines).toHaveLength(h + 2);
      for (const l of lines) expect(width(l)).toBe(w);
    }
  });

  test("the current leader is drawn on the top rows and the first leader on the bottom row", () => {
    const lines = renderChart({ points, now, width: 60, height: 6 });
    const plot = lines.slice(0, 6).map(stripAnsi);
    // Newest value (1495) is the max: its last 10 h of a 72 h span (~7 of 54 cells) sit on the top row.
    const top = plot[0]!;
    expect(dotsIn(top.slice(-6))).toBe(6);
    expect(dotsIn(top.slice(6, 40))).toBe(0);
    // The oldest value (1000) is the min: the bottom row holds dots on the left and none at the right end.
    const bottom = plot[5]!;
    expect(dotsIn(bottom.slice(6, 20))).toBeGreaterThan(5);
    expect(dotsIn(bottom.slice(-10))).toBe(0);
    // Axis labels: max at the top, min at the bottom.
    expect(top.trimStart().startsWith("1,52")).toBe(true); // 1495 + 5% padding of the range
    expect(bottom.trimStart().startsWith("97")).toBe(true);
    expect(stripAnsi(lines[7]!)).toContain("now");
    expect(stripAnsi(lines[7]!)).toContain("05-29 12:00"); // the first change, in UTC
  });

  test("the target line widens the range so it is always visible", () => {
    const lines = renderChart({ points: [{ t: now - H, v: 1000 }], now, target: 2000, width: 40, height: 4 });
    expect(stripAnsi(lines[0]!).trimStart().startsWith("2,05")).toBe(true);
    expect(dotsIn(lines[0]!)).toBeGreaterThan(5); // the dashed target on the top row
  });

  test("no points: a message, not an empty axis", () => {
    const lines = renderChart({ points: [], now, width: 50, height: 4 });
    expect(lines.map(stripAnsi).join("\n")).toContain("no leader yet");
    for (const l of lines) expect(width(l)).toBe(50);
  });
});
