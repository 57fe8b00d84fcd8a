// Raw stdin bytes → key names. One read may hold several keys (pasted text, tmux send-keys "jjj") and
// escape sequences in both the normal (ESC [ A) and application (ESC O A) cursor modes.
// A key is its character when printable ("q", "1", "G") and a lower-case name otherwise ("up", "enter").

export type Key = string;

const CSI_FINAL: Record<string, Key> = { A: "up", B: "down", C: "right", D: "left", H: "home", F: "end", Z: "backtab" };
const TILDE: Record<string, Key> = { "1": "home", "7": "home", "4": "end", "8": "end", "5": "pageup", "6": "pagedown", "3": "delete" };

export function decodeKeys(input: string): Key[] {
  const keys: Key[] = [];
  let i = 0;
  while (i < input.length) {
    const ch = input[i]!;
    if (ch === "\x1b") {
      const next = input[i + 1];
      if (next === "[") {
        // CSI: parameters and intermediates, then one final byte in @–~.
        const m = /^\x1b\[([0-?]*)([ -/]*)([@-~])/.exec(input.slice(i, i + 32));
        if (m) {
          const [, params, , final] = m;
          const key = final === "~" ? TILDE[params!.split(";")[0]!] : CSI_FINAL[final!];
          if (key) keys.push(key);
          i += m[0].length;
          continue;
        }
      } else if (next === "O" && i + 2 < input.length) {
        const key = CSI_FINAL[input[i + 2]!];
        if (key) keys.push(key);
        i += 3;
        continue;
      }
      keys.push("escape");
      i++;
      continue;
    }
    if (ch === "\r" || ch === "\n") keys.push("enter");
    else if (ch === "\t") keys.push("tab");
    else if (ch === "\x03") keys.push("ctrl-c");
    else if (ch === "\x04") keys.push("ctrl-d");
    else if (ch === "\x7f" || ch === "\b") keys.push("backspace");
    else if (ch === " ") keys.push("space");
    else if (ch >= " ") {
      const cp = input.codePointAt(i)!;
      keys.push(String.fromCodePoint(cp));
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    i++;
  }
  return keys;
}
