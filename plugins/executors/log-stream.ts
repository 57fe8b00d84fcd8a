// Forwards a run's stdout/stderr into the validator's log line by line, up to a byte cap, and keeps the
// last lines so a failed run can say why. Output past the cap is still drained (a full pipe would stall
// the run) but dropped, so a chatty or hostile submission cannot flood the validator's log.
import type { Logger } from "../../core/log.ts";

export type StreamName = "stdout" | "stderr";

export interface LogStream {
  write(stream: StreamName, chunk: string | Uint8Array): void;
  /** Emits any unterminated last line. */
  end(): void;
  /** The last lines seen on either stream (kept even past the cap), for error messages. */
  tail(): string;
  /** Bytes received in total, forwarded or not. */
  readonly bytes: number;
}

const TAIL_LINES = 20;
const MAX_LINE = 4096;

export function logStream(log: Logger, maxBytes: number): LogStream {
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  const partial: Record<StreamName, string> = { stdout: "", stderr: "" };
  const last: string[] = [];
  let bytes = 0;
  let forwarded = 0;
  let capped = false;

  const line = (stream: StreamName, text: string) => {
    const clipped = text.length > MAX_LINE ? `${text.slice(0, MAX_LINE)}…` : text;
    last.push(clipped);
    if (last.length > TAIL_LINES) last.shift();
    if (capped) return;
    forwarded += clipped.length + 1;
    if (forwarded > maxBytes) {
      capped = true;
      log.warn(`run output exceeded ${maxBytes} bytes; the rest is not logged`);
      return;
    }
    log.info(clipped, { stream });
  };

  return {
    write(stream, chunk) {
      bytes += typeof chunk === "string" ? chunk.length : chunk.byteLength;
      const text = partial[stream] + (typeof chunk === "string" ? chunk : decoders[stream].decode(chunk, { stream: true }));
      const lines = text.split("\n");
      partial[stream] = lines.pop() ?? "";
      // A single endless line must not grow without bound either.
      if (partial[stream].length > MAX_LINE) {
        line(stream, partial[stream]);
        partial[stream] = "";
      }
      for (const l of lines) line(stream, l.replace(/\r$/, ""));
    },
    end() {
      for (const stream of ["stdout", "stderr"] as const) {
        const rest = partial[stream] + decoders[stream].decode();
        partial[stream] = "";
        if (rest) line(stream, rest);
      }
    },
    tail: () => last.join("\n"),
    get bytes() {
      return bytes;
    },
  };
}
