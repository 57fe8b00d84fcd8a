// One SSH connection to a remote GPU host, kept open between runs, verified against known_hosts, and
// re-opened with exponential backoff after it fails or drops.
import { readFileSync } from "node:fs";
import { Client, type ClientChannel, type SFTPWrapper } from "ssh2";
import type { Logger } from "../../core/log.ts";
import { fingerprint, hostEntryName, verifyHostKey } from "./known-hosts.ts";

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  privateKeyPath?: string;
  passphrase?: string;
  /** ssh-agent socket. */
  agent?: string;
  knownHostsPath: string;
  trustUnknownHost: boolean;
  connectTimeoutSeconds: number;
  backoff: { initialSeconds: number; maxSeconds: number };
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** A live connection. `dropped` settles when it closes for any reason. */
export interface Session {
  client: Client;
  dropped: Promise<void>;
  isOpen(): boolean;
  /** Runs a short command and collects its output (capped). */
  exec(command: string, maxBytes?: number): Promise<ExecResult>;
  /** Starts a long command; the caller reads the channel. */
  start(command: string): Promise<ClientChannel>;
  sftp(): Promise<SFTPWrapper>;
}

export class ConnectionLost extends Error {}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });

export function sshHost(target: SshTarget, onConnect: (s: Session, log: Logger) => Promise<void>) {
  let session: Session | undefined;
  let connecting: Promise<Session> | undefined;
  let failures = 0;
  let retryAt = 0;
  const where = `${target.user}@${hostEntryName(target.host, target.port)}`;

  const failed = () => {
    failures++;
    const delay = Math.min(target.backoff.initialSeconds * 2 ** (failures - 1), target.backoff.maxSeconds);
    retryAt = Date.now() + delay * 1000;
  };

  async function open(log: Logger): Promise<Session> {
    const client = new Client();
    let refusal: string | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      client.once("ready", resolve);
      client.once("error", (e) => reject(new Error(refusal ?? e.message)));
    });
    let knownHosts = "";
    try {
      knownHosts = readFileSync(target.knownHostsPath, "utf8");
    } catch (e) {
      if (!target.trustUnknownHost) throw new Error(`cannot read known_hosts ${target.knownHostsPath}: ${(e as Error).message}`);
    }
    client.connect({
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey: target.privateKeyPath ? readFileSync(target.privateKeyPath) : undefined,
      passphrase: target.passphrase,
      agent: target.agent,
      readyTimeout: target.connectTimeoutSeconds * 1000,
      keepaliveInterval: 10_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        const verdict = verifyHostKey(knownHosts, target.host, target.port, key);
        const fp = fingerprint(key);
        if (verdict.kind === "known") return true;
        if (verdict.kind === "unknown" && target.trustUnknownHost) {
          log.warn(`trusting the unknown host key of ${where} (${fp}) because trustUnknownHost is set`);
          return true;
        }
        refusal =
          verdict.kind === "unknown"
            ? `host key of ${where} is not in ${target.knownHostsPath} (fingerprint ${fp}); add it (ssh-keyscan -p ${target.port} ${target.host} >> ${target.knownHostsPath}, after checking the fingerprint) or set trustUnknownHost: true`
            : verdict.kind === "revoked"
              ? `host key of ${where} (${fp}) is marked @revoked in ${target.knownHostsPath}`
              : `host key of ${where} (${fp}) does not match the one in ${target.knownHostsPath}: refusing to connect (possible man-in-the-middle)`;
        return false;
      },
    });
    try {
      await ready;
    } catch (e) {
      client.end();
      throw e;
    }
    let open = true;
    const dropped = new Promise<void>((resolve) => {
      client.on("error", () => undefined); // reported through "close" and the failing call
      client.once("close", () => {
        open = false;
        resolve();
      });
    });
    const s: Session = {
      client,
      dropped,
      isOpen: () => open,
      start: (command) =>
        new Promise((resolve, reject) => {
          if (!open) return reject(new ConnectionLost(`connection to ${where} is closed`));
          client.exec(command, (err, channel) => (err ? reject(err) : resolve(channel)));
        }),
      async exec(command, maxBytes = 1 << 20) {
        const channel = await s.start(command);
        return new Promise<ExecResult>((resolve, reject) => {
          const out: Buffer[] = [];
          const err: Buffer[] = [];
          let size = 0;
          const keep = (into: Buffer[]) => (d: Buffer) => {
            size += d.length;
            if (size <= maxBytes) into.push(d);
          };
          channel.on("data", keep(out));
          channel.stderr.on("data", keep(err));
          const lost = () => reject(new ConnectionLost(`connection to ${where} dropped`));
          dropped.then(lost);
          channel.on("close", (code: number | null, sig: string | null) => {
            if (code === undefined && !open) return lost();
            resolve({ code: code ?? null, signal: sig ?? null, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
          });
        });
      },
      sftp: () =>
        new Promise((resolve, reject) => {
          if (!open) return reject(new ConnectionLost(`connection to ${where} is closed`));
          client.sftp((err, sftp) => (err ? reject(err) : resolve(sftp)));
        }),
    };
    dropped.then(() => {
      if (session === s) {
        session = undefined;
        failed();
        log.warn(`connection to ${where} closed; the next run reconnects`);
      }
    });
    await onConnect(s, log);
    return s;
  }

  return {
    where,
    /** The open session, connecting first (after any backoff delay) when there is none. */
    async session(log: Logger, signal: AbortSignal): Promise<Session> {
      if (session?.isOpen()) return session;
      connecting ??= (async () => {
        const wait = retryAt - Date.now();
        if (wait > 0) {
          log.info(`waiting ${Math.ceil(wait / 1000)}s before reconnecting to ${where}`);
          await sleep(wait, signal);
          if (signal.aborted) throw new Error("cancelled");
        }
        try {
          const s = await open(log);
          failures = 0;
          session = s;
          log.info(`connected to ${where}`);
          return s;
        } catch (e) {
          failed();
          throw e;
        }
      })().finally(() => {
        connecting = undefined;
      });
      return connecting;
    },
    close() {
      session?.client.end();
      session = undefined;
    },
  };
}
