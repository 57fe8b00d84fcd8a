// Numbers, durations and times as the dashboard prints them. Locale-independent on purpose: the same
// frame on every machine, and tests that do not depend on the host's settings.

/** 1234567.891 → "1,234,567.9" (digits after the point: `decimals`). */
export function num(v: number, decimals = 0): string {
  if (!Number.isFinite(v)) return String(v);
  const [int, frac] = Math.abs(v).toFixed(decimals).split(".");
  const grouped = int!.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (v < 0 && Number(int + "." + (frac ?? "0")) !== 0 ? "-" : "") + grouped + (frac ? "." + frac : "");
}

export const tps = (v: number | null | undefined) => (v === null || v === undefined ? "—" : num(v, 1));

export const pct = (v: number | null | undefined, decimals = 1) => (v === null || v === undefined ? "—" : `${num(v * 100, decimals)}%`);

/** Signed percentage for changes: "+24.6%", "-3.0%". */
export const signedPct = (v: number) => `${v > 0 ? "+" : ""}${num(v, 1)}%`;

/** 3725 → "1h 2m"; the two largest units only. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** How long before `now` an ISO time was: "just now", "5m ago", "3h ago", "2d ago"; "—" without a time. */
export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "—";
  const s = Math.floor((now - t) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** "06-01 12:00" in UTC: the API's times are UTC and so is every label on the dashboard. */
export const shortTime = (ms: number) => new Date(ms).toISOString().slice(5, 16).replace("T", " ");

/** "12:00:03" local clock, for "updated at" stamps the person in front of the terminal reads. */
export const clock = (ms: number) => {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
};

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${num(n / 1024, 1)} KiB`;
  return `${num(n / 1024 / 1024, 1)} MiB`;
}
