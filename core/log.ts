// A small leveled logger: human lines on stderr by default, JSON lines when CRUSADES_LOG_FORMAT=json.
export type Level = "debug" | "info" | "warn" | "error";
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export interface LoggerOptions {
  level?: Level;
  json?: boolean;
  write?: (line: string) => void;
}

const env = (k: string) => (typeof process !== "undefined" ? process.env[k] : undefined);

export function createLogger(opts: LoggerOptions = {}, bound: Record<string, unknown> = {}): Logger {
  const min = order[opts.level ?? ((env("CRUSADES_LOG_LEVEL") as Level) || "info")] ?? order.info;
  const json = opts.json ?? env("CRUSADES_LOG_FORMAT") === "json";
  const write = opts.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (order[level] < min) return;
    const all = { ...bound, ...fields };
    if (json) {
      write(JSON.stringify({ t: new Date().toISOString(), level, msg, ...all }));
      return;
    }
    const tags = Object.entries(all)
      .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(" ");
    const time = new Date().toISOString().slice(11, 19);
    write(`${time} ${level.padEnd(5)} ${msg}${tags ? `  ${tags}` : ""}`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(opts, { ...bound, ...fields }),
  };
}

/** A logger that keeps lines in memory: for tests that assert on what an operator would read. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ level: "debug", json: false, write: (l) => lines.push(l) });
  return Object.assign(log, { lines });
}
