import { describe, expect, test } from "bun:test";
import { paintLine, tokenLines, tokenize, type Kind } from "./highlight.ts";
import { stripAnsi } from "./text.ts";

const kinds = (code: string, kind: Kind) => tokenize(code).filter((t) => t.kind === kind).map((t) => t.text);

describe("tokenize", () => {
  const src = `@torch.no_grad()
def inner_steps(model, data, n=0x1F, lr=3e-4):  # the loop
    s = "a # not a comment" + r'\\d+' + f"{n}"
    doc = """two
lines"""
    for _ in range(n):
        yield None
class Runner(object): pass
`;

  test("token texts join back to the source exactly", () => {
    expect(tokenize(src).map((t) => t.text).join("")).toBe(src);
  });

  test("keywords, builtins, def/class names, decorators", () => {
    expect(kinds(src, "keyword")).toEqual(["def", "for", "in", "yield", "None", "class", "pass"]);
    expect(kinds(src, "builtin")).toEqual(["range", "object"]);
    expect(kinds(src, "name")).toEqual(["inner_steps", "Runner"]);
    expect(kinds(src, "decorator")).toEqual(["@torch.no_grad"]);
  });

  test("strings with prefixes and triple quotes; a # inside a string is not a comment", () => {
    expect(kinds(src, "string")).toEqual(['"a # not a comment"', "r'\\d+'", 'f"{n}"', '"""two\nlines"""']);
    expect(kinds(src, "comment")).toEqual(["# the loop"]);
  });

  test("numbers: hex, exponent, decimals, not parts of names", () => {
    expect(kinds(src, "number")).toEqual(["0x1F", "3e-4"]);
    expect(kinds("x1 = y2_3", "number")).toEqual([]);
    expect(kinds("x1 = 1.5j + .25", "number")).toEqual(["1.5j", ".25"]);
  });

  test("escaped quotes stay inside the string; an unterminated one stops at the line end", () => {
    expect(kinds(`s = "say \\"hi\\""`, "string")).toEqual([`"say \\"hi\\""`]);
    expect(kinds(`s = "open\nx = 1`, "string")).toEqual([`"open`]);
    expect(kinds(`s = "open\nx = 1`, "number")).toEqual(["1"]);
  });

  test("an unterminated triple quote runs to the end without failing", () => {
    const code = `x = '''never closed\nstill string`;
    expect(tokenize(code).map((t) => t.text).join("")).toBe(code);
    expect(kinds(code, "string")).toEqual([`'''never closed\nstill string`]);
  });
});

describe("tokenLines and paintLine", () => {
  test("splits a multi-line string across lines and keeps the line count", () => {
    const lines = tokenLines('a = """x\ny"""\nb = 1\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]![0]).toEqual({ kind: "string", text: 'y"""' });
    expect(lines.map((l) => l.map((t) => t.text).join(""))).toEqual(['a = """x', 'y"""', "b = 1"]);
  });

  test("paints keywords and strings in colour without changing the text", () => {
    const [line] = tokenLines('def f(): return "s"');
    const painted = paintLine(line!);
    expect(stripAnsi(painted)).toBe('def f(): return "s"');
    expect(painted).toContain("\x1b[35mdef"); // keyword colour
    expect(painted).toContain('\x1b[33m"s"'); // string colour
  });
});
