// Owning the terminal: alternate screen, hidden cursor, no autowrap, raw keyboard input, redraws of only
// the lines that changed, and putting all of it back however the process ends (quit, signal, crash).
import { writeSync } from "node:fs";
import { decodeKeys, type Key } from "./keys.ts";

const ENTER = "\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[2J";
const LEAVE = "\x1b[0m\x1b[?7h\x1b[?25h\x1b[?1049l";
// Synchronized output (DEC mode 2026): terminals that know it paint the frame at once, others ignore it.
const BEGIN = "\x1b[?2026h";
const END = "\x1b[?2026l";

export interface Terminal {
  size(): { cols: number; rows: number };
  draw(lines: string[]): void;
  close(): void;
}

export interface TerminalOptions {
  onKeys(keys: Key[]): void;
  onResize(): void;
}

export function openTerminal(opts: TerminalOptions): Terminal {
  const out = process.stdout;
  const input = process.stdin;
  let closed = false;
  let shown: string[] = [];
  let shownSize = "";

  const restore = () => {
    if (closed) return;
    closed = true;
    // Synchronous on purpose: this also runs from the exit handler, where queued writes are lost.
    try {
      writeSync(1, LEAVE);
    } catch {
      /* stdout is gone (terminal closed): nothing left to restore */
    }
    try {
      if (input.isTTY) input.setRawMode(false);
      input.pause();
    } catch {
      /* stdin already closed */
    }
  };

  const onSignal = (sig: NodeJS.Signals, code: number) => () => {
    restore();
    process.exit(128 + code);
  };
  const crash = (e: unknown) => {
    restore();
    process.stderr.write(`tui crashed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  };
  const resized = () => {
    if (!closed) opts.onResize();
  };
  process.on("exit", restore);
  process.on("SIGTERM", onSignal("SIGTERM", 15));
  process.on("SIGHUP", onSignal("SIGHUP", 1));
  process.on("SIGINT", onSignal("SIGINT", 2));
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
  out.on("resize", resized);
  try {
    process.on("SIGWINCH", resized);
  } catch {
    /* runtimes without SIGWINCH rely on stdout's resize event and the size check on each draw */
  }

  out.write(ENTER);
  if (input.isTTY) input.setRawMode(true);
  input.setEncoding("utf8");
  input.on("data", (chunk: string) => {
    if (!closed) opts.onKeys(decodeKeys(chunk));
  });
  input.resume();

  const size = () => ({ cols: out.columns || 80, rows: out.rows || 24 });

  return {
    size,
    draw(lines) {
      if (closed) return;
      const { cols, rows } = size();
      const key = `${cols}x${rows}`;
      let buf = BEGIN;
      if (key !== shownSize) {
        buf += "\x1b[2J";
        shown = [];
        shownSize = key;
      }
      for (let i = 0; i < Math.min(lines.length, rows); i++) {
        if (shown[i] === lines[i]) continue;
        // Erase first, then write: with autowrap off, an erase after a full-width line would eat its last column.
        buf += `\x1b[${i + 1};1H\x1b[2K${lines[i]}\x1b[0m`;
      }
      shown = lines.slice(0, rows);
      out.write(buf + END);
    },
    close: restore,
  };
}
