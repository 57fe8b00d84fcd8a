// This machine's clock against the chain's. The chain's clock is its head's Timestamp.Now; a local clock
// far from it misleads whoever reads times (the timelock round a miner aims at, the ages a validator's
// API shows, which clamps negative ages to 0), so the CLIs name the difference in one line.
// Tests shift a process's clock with CRUSADES_CLOCK_OFFSET_SECONDS, as a wrong clock would be, without
// touching the system clock.

const offsetMs = Number(process.env.CRUSADES_CLOCK_OFFSET_SECONDS ?? 0) * 1000 || 0;

/** Now, in ms, by this process's clock (shifted by CRUSADES_CLOCK_OFFSET_SECONDS in tests). */
export const localClock = () => Date.now() + offsetMs;

/** Clock disagreements under this many seconds (beyond a block) are not worth a line. */
export const CLOCK_NOTE_SECONDS = 30;

/** True when `offsetSeconds` (local minus chain) is worth a line, given the chain's block time. */
export const clockIsOff = (offsetSeconds: number, blockTime: number) => Math.abs(offsetSeconds) > CLOCK_NOTE_SECONDS + blockTime;

function duration(seconds: number): string {
  const minutes = Math.round(seconds / 60);
  if (minutes >= 60) return `${Math.round(minutes / 6) / 10} h`;
  return minutes ? `${minutes} min` : `${Math.round(seconds)} s`;
}

/** "ahead of the chain's by about 2 h" for a local clock `offsetSeconds` ahead (negative: behind). */
export const describeClockOffset = (offsetSeconds: number) => `${offsetSeconds > 0 ? "ahead of" : "behind"} the chain's by about ${duration(Math.abs(offsetSeconds))}`;
