// Terminal text: SGR styling, display width, truncation and padding. Widths count terminal columns (CJK
// and emoji take two, combining marks none), never UTF-16 units, so frames line up in any language.
// Everything the API returns is untrusted (hotkeys, error messages, miner code): `sanitize` keeps it
// from carrying escape sequences or bidi overrides into the terminal.

export const RESET = "\x1b[0m";
const ESC_SGR = /\x1b\[[0-9;]*m/g;

const sgr = (codes: string) => (s: string) => (s === "" ? "" : `\x1b[${codes}m${s}${RESET}`);
export const bold = sgr("1");
export const dim = sgr("2");
export const inverse = sgr("7");
export const red = sgr("31");
export const green = sgr("32");
export const yellow = sgr("33");
export const blue = sgr("34");
export const magenta = sgr("35");
export const cyan = sgr("36");
export const gray = sgr("90");
export const gold = sgr("1;33");
export const bronze = sgr("38;5;173");
export const onRed = sgr("1;97;41");
export const onBlue = sgr("1;97;44");

export const stripAnsi = (s: string) => s.replace(ESC_SGR, "");

// Ranges of East Asian Wide/Fullwidth characters and emoji presentation blocks (Unicode 15), enough for
// hotkeys, error messages and code comments; ambiguous-width characters count as one like most terminals.
const WIDE: [number, number][] = [
  [0x1100, 0x115f], [0x231a, 0x231b], [0x2329, 0x232a], [0x23e9, 0x23ec], [0x23f0, 0x23f0], [0x23f3, 0x23f3],
  [0x25fd, 0x25fe], [0x2614, 0x2615], [0x2648, 0x2653], [0x267f, 0x267f], [0x2693, 0x2693], [0x26a1, 0x26a1],
  [0x26aa, 0x26ab], [0x26bd, 0x26be], [0x26c4, 0x26c5], [0x26ce, 0x26ce], [0x26d4, 0x26d4], [0x26ea, 0x26ea],
  [0x26f2, 0x26f3], [0x26f5, 0x26f5], [0x26fa, 0x26fa], [0x26fd, 0x26fd], [0x2705, 0x2705], [0x270a, 0x270b],
  [0x2728, 0x2728], [0x274c, 0x274c], [0x274e, 0x274e], [0x2753, 0x2755], [0x2757, 0x2757], [0x2795, 0x2797],
  [0x27b0, 0x27b0], [0x27bf, 0x27bf], [0x2b1b, 0x2b1c], [0x2b50, 0x2b50], [0x2b55, 0x2b55], [0x2e80, 0x303e],
  [0x3041, 0x33ff], [0x3400, 0x4dbf], [0x4e00, 0x9fff], [0xa000, 0xa4cf], [0xa960, 0xa97f], [0xac00, 0xd7a3],
  [0xf900, 0xfaff], [0xfe10, 0xfe19], [0xfe30, 0xfe6f], [0xff00, 0xff60], [0xffe0, 0xffe6], [0x1f004, 0x1f004],
  [0x1f0cf, 0x1f0cf], [0x1f18e, 0x1f18e], [0x1f191, 0x1f19a], [0x1f200, 0x1f251], [0x1f300, 0x1f64f],
  [0x1f680, 0x1f6ff], [0x1f7e0, 0x1f7eb], [0x1f900, 0x1f9ff], [0x1fa70, 0x1faff], [0x20000, 0x3fffd],
];

const inRanges = (cp: number, ranges: [number, number][]) => {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const [a, b] = ranges[mid]!;
    if (cp < a) hi = mid - 1;
    else if (cp > b) lo = mid + 1;
    else return true;
  }
  return false;
};

/** Columns one code point takes: 0 for combining marks, joiners and variation selectors, 2 for wide. */
export function charWidth(cp: number): number {
  if (cp < 0x300) return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ? 0 : 1;
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0x1ab0 && cp <= 0x1aff) || (cp >= 0x20d0 && cp <= 0x20ff) || (cp >= 0xe0100 && cp <= 0xe01ef)) return 0;
  return inRanges(cp, WIDE) ? 2 : 1;
}

/** Visible width of a string that may hold SGR sequences. */
export function width(s: string): number {
  let w = 0;
  for (const ch of stripAnsi(s)) w += charWidth(ch.codePointAt(0)!);
  return w;
}

/** Cuts `s` to at most `max` columns, ending in "…" when something was cut; SGR sequences are kept and closed. */
export function truncate(s: string, max: number): string {
  if (max <= 0) return "";
  if (width(s) <= max) return s;
  let out = "";
  let used = 0;
  let styled = false;
  for (let i = 0; i < s.length; ) {
    if (s[i] === "\x1b") {
      const m = /^\x1b\[[0-9;]*m/.exec(s.slice(i, i + 24));
      if (m) {
        out += m[0];
        styled = true;
        i += m[0].length;
        continue;
      }
    }
    const cp = s.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    const w = charWidth(cp);
    if (used + w > max - 1) break;
    out += ch;
    used += w;
    i += ch.length;
  }
  return out + "…" + (styled ? RESET : "");
}

/** Exactly `w` columns: truncated, then padded on the side `align` leaves open. */
export function fit(s: string, w: number, align: "left" | "right" | "center" = "left"): string {
  const t = truncate(s, w);
  const gap = Math.max(0, w - width(t));
  if (align === "right") return " ".repeat(gap) + t;
  if (align === "center") return " ".repeat(gap >> 1) + t + " ".repeat(gap - (gap >> 1));
  return t + " ".repeat(gap);
}

/** Shortens an identifier (hotkey, hash) in the middle so both ends stay recognisable. Plain text only. */
export function middle(s: string, max: number): string {
  if (width(s) <= max) return s;
  if (max <= 1) return truncate(s, max);
  const chars = [...s];
  const head = Math.ceil((max - 1) / 2);
  const tail = max - 1 - head;
  return chars.slice(0, head).join("") + "…" + (tail > 0 ? chars.slice(-tail).join("") : "");
}

// C0/C1 controls (ESC included) and the bidi embedding/override/isolate controls ("trojan source").
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/** One line of untrusted text made safe to print: newlines and tabs become spaces, other controls "�". */
export function sanitize(s: string): string {
  return s.replace(/\r\n|[\r\n\t]/g, " ").replace(UNSAFE, "\ufffd");
}

/** A line of untrusted code: tabs expanded to the next stop, controls made visible as "�". */
export function sanitizeCodeLine(line: string, tab = 4): string {
  let out = "";
  let col = 0;
  for (const ch of line.replace(UNSAFE, "\ufffd")) {
    if (ch === "\t") {
      const n = tab - (col % tab);
      out += " ".repeat(n);
      col += n;
    } else {
      out += ch;
      col += charWidth(ch.codePointAt(0)!);
    }
  }
  return out;
}
