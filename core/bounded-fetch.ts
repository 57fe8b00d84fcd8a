// A fetch for APIs whose answers are input like any other (a code host's API, a webhook receiver): one
// deadline covers connect, headers and body, and the body is counted as it streams and abandoned past a
// size limit, so a hanging or endless answer costs at most the deadline and the limit, never a frozen
// caller or a 60 MB parse. The Response it returns holds the whole, bounded body. (Miners' code has its
// own, stricter fetcher in fetch.ts: pinned addresses, redirects by hand.)

export interface Bounds {
  timeoutMs: number;
  maxBytes: number;
}

/** The deadline passed before the whole answer arrived. */
export class NoAnswer extends Error {
  override name = "NoAnswer";
}

/** The answer was longer than the limit; the connection was dropped there. */
export class AnswerTooLarge extends Error {
  override name = "AnswerTooLarge";
}

// Statuses whose Response may not carry a body.
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

export async function fetchBounded(input: string | URL | Request, init: RequestInit, bounds: Bounds): Promise<Response> {
  const deadline = AbortSignal.timeout(bounds.timeoutMs);
  const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
  try {
    const res = await fetch(input, { ...init, signal });
    const declared = Number(res.headers.get("content-length"));
    if (declared > bounds.maxBytes) {
      await res.body?.cancel().catch(() => {});
      throw new AnswerTooLarge(`the answer is ${declared} bytes, more than ${bounds.maxBytes} bytes`);
    }
    const body = await readAtMost(res, bounds.maxBytes, signal);
    return new Response(NULL_BODY.has(res.status) ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
  } catch (e) {
    if (deadline.aborted && !init.signal?.aborted) throw new NoAnswer(`no answer within ${bounds.timeoutMs} ms`);
    throw e;
  }
}

/** Reads the body chunk by chunk, cancelling the stream once it passes maxBytes or the signal fires. */
async function readAtMost(res: Response, maxBytes: number, signal: AbortSignal): Promise<Uint8Array<ArrayBuffer>> {
  if (!res.body) return new Uint8Array();
  const reader = res.body.getReader();
  // A stalled body must end at the deadline even where the runtime does not error the stream on abort.
  let stop = () => {};
  const aborted = new Promise<never>((_, reject) => {
    stop = () => reject(signal.reason);
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
  aborted.catch(() => {});
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), aborted]);
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw new AnswerTooLarge(`the answer is more than ${maxBytes} bytes`);
      chunks.push(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  } finally {
    signal.removeEventListener("abort", stop);
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
