// A small Python tokenizer for the code view: keywords, builtins, strings (prefixes, triple quotes that
// span lines, escapes), comments, numbers, decorators and def/class names. It never fails: anything it
// does not recognise is plain text, so hostile or broken code still shows exactly as stored.
import { blue, bold, cyan, gray, green, magenta, yellow } from "./text.ts";

export type Kind = "keyword" | "builtin" | "string" | "comment" | "number" | "decorator" | "name" | "plain";
export interface Token {
  kind: Kind;
  text: string;
}

const KEYWORDS = new Set(
  "False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield".split(" "),
);
const BUILTINS = new Set(
  "abs all any bool bytes callable dict divmod enumerate filter float format getattr hasattr hash id int isinstance issubclass iter len list map max min next object open pow print property range repr reversed round set setattr slice sorted staticmethod classmethod str sum super tuple type vars zip self cls Exception ValueError TypeError RuntimeError KeyError IndexError StopIteration AssertionError NotImplementedError".split(
    " ",
  ),
);

const STRING_START = /^(?:[rRbBuUfF]|[rR][bBfF]|[bBfF][rR])?('''|"""|'|")/;
const NUMBER = /^(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)/;
const IDENT = /^[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*/;

/** Tokens of a whole file; token texts concatenate back to `code` exactly. */
export function tokenize(code: string): Token[] {
  const out: Token[] = [];
  const push = (kind: Kind, text: string) => {
    const last = out[out.length - 1];
    if (last && last.kind === kind && kind === "plain") last.text += text;
    else out.push({ kind, text });
  };
  let i = 0;
  let expectName = false; // after def/class
  let lineStart = true;
  while (i < code.length) {
    const rest = code.slice(i, i + 400);
    const ch = code[i]!;
    if (ch === "#") {
      const end = code.indexOf("\n", i);
      const text = code.slice(i, end < 0 ? code.length : end);
      push("comment", text);
      i += text.length;
      continue;
    }
    const str = STRING_START.exec(rest);
    if (str && (i === 0 || !/[\w]/.test(code[i - 1]!))) {
      const quote = str[1]!;
      let j = i + str[0].length;
      for (;;) {
        if (j >= code.length) break;
        if (code[j] === "\\") {
          j += 2;
          continue;
        }
        if (quote.length === 1 && code[j] === "\n") break; // an unterminated one-line string ends at the line
        if (code.startsWith(quote, j)) {
          j += quote.length;
          break;
        }
        j++;
      }
      push("string", code.slice(i, Math.min(j, code.length)));
      i = Math.min(j, code.length);
      expectName = false;
      lineStart = false;
      continue;
    }
    if (/[0-9]/.test(ch) || (ch === "." && /[0-9]/.test(code[i + 1] ?? ""))) {
      const m = NUMBER.exec(rest)!;
      push("number", m[0]);
      i += m[0].length;
      lineStart = false;
      continue;
    }
    if (ch === "@" && lineStart) {
      const m = /^@[\w.]+/.exec(rest);
      if (m) {
        push("decorator", m[0]);
        i += m[0].length;
        lineStart = false;
        continue;
      }
    }
    const id = IDENT.exec(rest);
    if (id) {
      const w = id[0];
      if (expectName) push("name", w);
      else if (KEYWORDS.has(w)) push("keyword", w);
      else if (BUILTINS.has(w)) push("builtin", w);
      else push("plain", w);
      expectName = w === "def" || w === "class";
      i += w.length;
      lineStart = false;
      continue;
    }
    push("plain", ch);
    if (ch === "\n") lineStart = true;
    else if (ch !== " " && ch !== "\t") lineStart = false;
    i++;
  }
  return out;
}

/** Tokens split at newlines: one array per line (a string spanning lines is cut into pieces). */
export function tokenLines(code: string): Token[][] {
  const lines: Token[][] = [[]];
  for (const tok of tokenize(code.replace(/\r\n/g, "\n"))) {
    const parts = tok.text.split("\n");
    parts.forEach((p, k) => {
      if (k > 0) lines.push([]);
      if (p) lines[lines.length - 1]!.push({ kind: tok.kind, text: p });
    });
  }
  if (lines.length > 1 && lines[lines.length - 1]!.length === 0 && code.endsWith("\n")) lines.pop();
  return lines;
}

const PAINT: Record<Kind, (s: string) => string> = {
  keyword: magenta,
  builtin: cyan,
  string: yellow,
  comment: gray,
  number: blue,
  decorator: green,
  name: (s) => bold(green(s)),
  plain: (s) => s,
};

/** One line's tokens as styled text. */
export const paintLine = (tokens: Token[]) => tokens.map((t) => PAINT[t.kind](t.text)).join("");
