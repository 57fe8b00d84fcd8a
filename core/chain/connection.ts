// One websocket to a node, kept alive: when it drops we redial with exponential backoff (the provider's
// own retry uses a fixed delay and would hammer a node that is restarting), and @polkadot/api reloads
// metadata from the node each time it reconnects.
import { ApiPromise, WsProvider } from "@polkadot/api";
import { createLogger, type Logger } from "../log.ts";
import { ChainError } from "./errors.ts";
import { SUBTENSOR_SIGNED_EXTENSIONS } from "./extensions.ts";

export interface ConnectionOptions {
  log?: Logger;
  /** How long the first connection may take, and how long a call waits for a lost socket to return. */
  timeoutMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

export interface Connection {
  api: ApiPromise;
  /** The raw JSON-RPC transport, for calls whose errors we report ourselves (rpc-core logs its own). */
  provider: WsProvider;
  url: string;
  isConnected(): boolean;
  /** Resolves when the socket is up and the API is usable; rejects after `timeoutMs`. */
  whenConnected(timeoutMs?: number): Promise<void>;
  /** Calls `fn` each time the socket drops; returns the unsubscribe function. */
  onDisconnect(fn: () => void): () => void;
  /** How many times the socket came back after dropping. */
  reconnects(): number;
  close(): Promise<void>;
}

export async function openConnection(url: string, opts: ConnectionOptions = {}): Promise<Connection> {
  const log = opts.log ?? createLogger();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const initialMs = opts.backoffInitialMs ?? 250;
  const maxMs = opts.backoffMaxMs ?? 15_000;

  const provider = new WsProvider(url, false, {}, timeoutMs);
  let closed = false;
  let everConnected = false;
  let attempt = 0;
  let reconnectCount = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const dropListeners = new Set<() => void>();
  // Callers waiting for the socket: `check` resolves them once usable, `fail` rejects them on close.
  const waiters = new Set<{ check: () => void; fail: (e: Error) => void }>();

  const dial = () => provider.connect().catch(() => schedule());
  function schedule() {
    if (closed || timer) return;
    // Full jitter keeps a fleet of validators from redialling a restarted node in lockstep.
    const delay = Math.min(maxMs, initialMs * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt++;
    timer = setTimeout(() => {
      timer = undefined;
      dial();
    }, delay);
  }

  provider.on("connected", () => {
    if (everConnected) {
      reconnectCount++;
      log.info(`reconnected to ${url}`, { attempts: attempt });
    }
    everConnected = true;
    attempt = 0;
  });
  provider.on("disconnected", () => {
    if (closed) return;
    if (everConnected && attempt === 0) log.warn(`connection to ${url} lost; redialling with backoff`);
    for (const fn of dropListeners) fn();
    schedule();
  });
  // The provider also reports socket errors as events; the close that follows drives the retry.
  provider.on("error", () => {});

  const api = new ApiPromise({ provider, signedExtensions: SUBTENSOR_SIGNED_EXTENSIONS, noInitWarn: true });
  api.on("error", () => {});
  // Ready again after each reconnect once metadata is reloaded; waiters poll the flag this sets.
  let usable = false;
  api.on("ready", () => {
    usable = true;
  });
  api.on("connected", () => {
    // On reconnect to the same chain the API does not emit "ready" again; a round trip proves it works.
    api.rpc.chain
      .getHeader()
      .then(() => {
        usable = true;
        for (const w of waiters) w.check();
      })
      .catch(() => {});
  });
  api.on("disconnected", () => {
    usable = false;
  });

  dial();
  const ready = await Promise.race([
    api.isReady.then(() => true),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs)),
  ]);
  if (!ready) {
    closed = true;
    clearTimeout(timer);
    await api.disconnect().catch(() => {});
    throw new ChainError(`cannot reach a subtensor node at ${url} within ${Math.round(timeoutMs / 1000)} s`, "connect");
  }
  usable = true;

  return {
    api,
    provider,
    url,
    isConnected: () => provider.isConnected && usable,
    whenConnected(waitMs = timeoutMs) {
      if (closed) return Promise.reject(new ChainError(`the connection to ${url} is closed`, "disconnected"));
      if (provider.isConnected && usable) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const waiter = {
          check: () => {
            if (!(provider.isConnected && usable)) return;
            clearTimeout(t);
            waiters.delete(waiter);
            resolve();
          },
          fail: (e: Error) => {
            clearTimeout(t);
            waiters.delete(waiter);
            reject(e);
          },
        };
        const t = setTimeout(
          () => waiter.fail(new ChainError(`the connection to ${url} did not come back within ${Math.round(waitMs / 1000)} s`, "disconnected")),
          waitMs,
        );
        waiters.add(waiter);
      });
    },
    onDisconnect(fn) {
      dropListeners.add(fn);
      return () => dropListeners.delete(fn);
    },
    reconnects: () => reconnectCount,
    async close() {
      closed = true;
      clearTimeout(timer);
      for (const w of waiters) w.fail(new ChainError(`the connection to ${url} was closed`, "disconnected"));
      await api.disconnect().catch(() => {});
    },
  };
}
