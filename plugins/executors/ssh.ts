// Runs evaluations on a remote GPU host over SSH: one warm server (session.ts) per submission, in a fresh
// remote directory, in the same sandbox container as the docker executor (or directly with the host's
// python3 when it has no Docker). Requests go up by SFTP, output streams back, results come down; a run
// that overruns takes the server with it (the container, or the remote process tree).
import { randomBytes } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";
import { existsSync } from "node:fs";
import { z } from "zod";
import type { SFTPWrapper } from "ssh2";
import type { EvaluationRequest } from "../../core/contracts.ts";
import type { Logger } from "../../core/log.ts";
import { defineExecutor } from "../../core/plugin.ts";
import { limitOptions, resultOf, wallClockLimitMs, type RunEnd } from "./harness.ts";
import { logStream } from "./log-stream.ts";
import { CONTAINER_OUT, dockerRunArgs, LABEL_VALIDATOR, requireWorkerDrop, SandboxOptions, sandboxSpec, serveCommand } from "./sandbox.ts";
import { SERVER_IDLE_MARGIN_SECONDS, serveArgs, SessionPool, type Output, type ServerFiles, type ServerHandle } from "./session.ts";
import { ConnectionLost, sshHost, type Session as Connection } from "./ssh-connection.ts";

const MAX_RESULT_BYTES = 16 << 20;

export const SshExecutorOptions = SandboxOptions.extend({
  host: z.string().min(1).describe("The GPU host."),
  port: z.number().int().min(1).max(65535).default(22).describe("SSH port."),
  user: z.string().min(1).describe("Login on the host (in its docker group for docker mode)."),
  privateKeyPath: z.string().min(1).optional().describe("Private key file; without one, the ssh-agent (`agent` or $SSH_AUTH_SOCK)."),
  passphrase: z.string().optional().describe("Passphrase of the private key."),
  agent: z.string().min(1).optional().describe("ssh-agent socket path."),
  knownHostsPath: z.string().min(1).default("~/.ssh/known_hosts").describe("known_hosts file the host key must be in."),
  trustUnknownHost: z.boolean().default(false).describe("Accept a host key that is not in known_hosts (logged with its fingerprint). Never in production."),
  mode: z.enum(["docker", "direct"]).default("docker").describe("docker: the sandbox container (image present on the host); direct: python3 on the host, no isolation."),
  remoteRepo: z.string().startsWith("/").optional().describe("direct mode: a checkout on the host holding environments/templar and hparams/models."),
  python: z.string().min(1).default("python3").describe("direct mode: the host's interpreter with the harness's Python stack."),
  remoteTmp: z.string().startsWith("/").default("/tmp").describe("Where each submission's server gets its own `mktemp -d` directory on the host."),
  ...limitOptions(),
  idleSeconds: z.number().positive().default(60).describe("A submission's server waits this long for its next run before it is removed."),
  connectTimeoutSeconds: z.number().positive().default(20).describe("Seconds to wait for the SSH handshake."),
  backoff: z
    .object({ initialSeconds: z.number().positive().default(5), maxSeconds: z.number().positive().default(300) })
    .prefault({})
    .describe("Reconnect delays after a failed or dropped connection: initialSeconds, doubled up to maxSeconds."),
})
  .refine((o) => o.mode !== "direct" || o.remoteRepo, { path: ["remoteRepo"], message: "direct mode needs the path of a checkout on the host" })
  .refine((o) => o.privateKeyPath || o.agent || process.env.SSH_AUTH_SOCK, { path: ["privateKeyPath"], message: "give a private key path, or an ssh-agent (agent or $SSH_AUTH_SOCK)" })
  .refine((o) => !o.privateKeyPath || existsSync(o.privateKeyPath), { path: ["privateKeyPath"], message: "no such file" });
export type SshExecutorOptions = z.infer<typeof SshExecutorOptions>;

/** Single-quotes for the remote POSIX shell. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

// Shell helpers run on the remote host. `killrun DIR` kills the process tree of the run in DIR (the pid
// it recorded, checked against its command line so a recycled pid is never hit): frozen top-down with
// SIGSTOP until no new member appears, then SIGKILLed together with its process group.
const KILL_RUN = [
  `tree() { ps -e -o pid= -o ppid= | awk -v r="$1" '{k[$2]=k[$2]" "$1} END{n=1;q[1]=r;for(i=1;i<=n;i++){c=split(k[q[i]],a," ");for(j=1;j<=c;j++)q[++n]=a[j]};for(i=1;i<=n;i++)print q[i]}'; }`,
  `killrun() { p=$(cat "$1/pid" 2>/dev/null) || return 0; grep -qF "$1" "/proc/$p/cmdline" 2>/dev/null || return 0; all=""; for r in 1 2 3 4; do t=$(tree "$p"); kill -s STOP $t 2>/dev/null; all="$all $t"; done; kill -s KILL $all 2>/dev/null; kill -s KILL -- "-$p" 2>/dev/null; return 0; }`,
].join("; ");

export const sshExecutor = defineExecutor("ssh", SshExecutorOptions, (opts) => {
  const prefix = `${opts.remoteTmp}/crusades-ssh-${opts.validatorId}-`;

  // Servers that a dropped connection or a crashed validator left behind: kill them, remove their dirs.
  const cleanStale = async (s: Connection, log: Logger) => {
    const script = [
      KILL_RUN,
      `n=0; for d in ${q(prefix)}*; do [ -d "$d" ] || continue; killrun "$d"; rm -rf "$d"; n=$((n+1)); done`,
      opts.mode === "docker" ? `ids=$(docker ps -aq --filter label=${LABEL_VALIDATOR}=${opts.validatorId}); [ -z "$ids" ] || { docker rm -f $ids >/dev/null; n=$((n+1)); }` : "true",
      "echo $n",
    ].join("; ");
    const r = await s.exec(script);
    const stale = r.stdout.trim();
    if (Number(stale) > 0) log.warn(`removed ${stale} stale run(s) left on ${host.where} by an earlier connection`);
  };
  const host = sshHost({ ...opts, knownHostsPath: opts.knownHostsPath.replace(/^~(?=\/)/, homedir()) }, cleanStale);
  // One server per submission, as in the docker executor: its runs share the imports, never a process,
  // and the next submission's first run removes it.
  const pool = new SessionPool({
    start: async (submissionId, log, output) => startServer(await host.session(log, new AbortController().signal), opts, prefix, submissionId, host.where, log, output),
    idleMs: opts.idleSeconds * 1000,
    exclusive: true,
  });

  return {
    async init(log) {
      await host.session(log, new AbortController().signal);
    },

    async evaluate(request: EvaluationRequest, ctx) {
      const log = ctx.log.child({ executor: "ssh", host: host.where, submission: request.submission_id, run: request.run_index });
      if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
      try {
        await host.session(log, ctx.signal);
      } catch (e) {
        if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
        return resultOf(request, { kind: "failed", message: `cannot connect to ${host.where}: ${(e as Error).message}` }, null, "");
      }
      const output = logStream(log, opts.maxLogBytes);
      const { end, document } = await pool.evaluate(request.submission_id, request, wallClockLimitMs(request, opts), ctx.signal, output, log);
      output.end();
      const result = resultOf(request, end, document, output.tail());
      log.info("evaluation finished", { success: result.success, tps: result.tps, error: result.error?.code ?? null });
      return opts.mode === "docker" ? requireWorkerDrop(request, result) : result;
    },

    async close() {
      await pool.close();
      host.close();
    },
  };
});


type SftpCall = <T = void>(f: (done: (e: Error | null | undefined, value?: T) => void) => void) => Promise<T>;

/**
 * SFTP calls as promises that reject once the connection is gone: ssh2 may never answer one made as it
 * drops. The calls in flight are tracked, not subscribed to `dropped` one by one: a server polls for
 * its status many times a second, for as long as the connection lives.
 */
function sftpCaller(conn: Connection, where: string): SftpCall {
  const pending = new Set<(e: Error) => void>();
  conn.dropped.then(() => {
    for (const reject of pending) reject(new ConnectionLost(`connection to ${where} dropped`));
  });
  return (f) =>
    new Promise((resolve, reject) => {
      if (!conn.isOpen()) return reject(new ConnectionLost(`connection to ${where} is closed`));
      pending.add(reject);
      try {
        f((e, value) => {
          pending.delete(reject);
          if (e) reject(e);
          else resolve(value as never);
        });
      } catch (e) {
        pending.delete(reject);
        reject(e);
      }
    });
}

const sftpFiles = (sftp: SFTPWrapper, call: SftpCall): ServerFiles => ({
  write: (path, text, mode) => call((done) => sftp.writeFile(path, text, { mode }, done)),
  rename: (from, to) => call((done) => sftp.rename(from, to, done)),
  exists: (path) => call<unknown>((done) => sftp.stat(path, done)).then(() => true, () => false),
  remove: (path) => call((done) => sftp.unlink(path, done)).catch(() => {}),
});

/**
 * Starts a warm server for one submission in a fresh remote directory (in/ and out/ 0700, so the worker's
 * uid reads neither; tmp/ for its home in direct mode), on its own channel of the connection.
 */
async function startServer(conn: Connection, opts: SshExecutorOptions, prefix: string, submissionId: string, where: string, log: Logger, output: Output): Promise<ServerHandle> {
  const made = await conn.exec(`D=$(mktemp -d ${q(prefix)}XXXXXXXX) && chmod 711 "$D" && mkdir -m 700 "$D/in" "$D/out" && mkdir -m 1777 "$D/tmp" && echo "$D"`);
  const dir = made.stdout.trim();
  if (made.code !== 0 || !dir.startsWith(prefix)) throw new Error(`cannot create a run directory on ${where}: ${made.stderr.trim()}`);
  log.debug("remote run directory", { dir });
  const inDir = `${dir}/in`;
  const outDir = `${dir}/out`;
  const idle = opts.idleSeconds + SERVER_IDLE_MARGIN_SECONDS;
  let container: string | undefined;
  let command: string;
  if (opts.mode === "docker") {
    const spec = sandboxSpec(opts, { session: randomBytes(12).toString("hex"), submissionId, command: serveCommand(idle) }, { inDir, outDir });
    container = spec.name;
    command = `echo $$ > ${q(`${dir}/pid`)} && exec docker ${dockerRunArgs(opts, opts, spec).map(q).join(" ")}`;
  } else {
    const env = ["PATH=$PATH", "HOME=$HOME", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1", "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", `TMPDIR=${q(`${dir}/tmp`)}`];
    command = `cd ${q(opts.remoteRepo!)} && echo $$ > ${q(`${dir}/pid`)} && exec env -i ${env.join(" ")} ${q(opts.python)} ${serveArgs(inDir, outDir, idle).map(q).join(" ")}`;
  }
  const cleanup = `${container ? `docker rm -f ${q(container)} >/dev/null 2>&1; ` : ""}${KILL_RUN}; killrun ${q(dir)}; rm -rf ${q(dir)}`;
  let sftp: SFTPWrapper | undefined;
  let channel: Awaited<ReturnType<Connection["start"]>>;
  try {
    sftp = await conn.sftp();
    channel = await conn.start(command);
  } catch (e) {
    sftp?.end();
    await conn.exec(cleanup).catch(() => {});
    throw new Error(`cannot start the evaluation server on ${where}: ${(e as Error).message}`);
  }
  channel.on("data", (d: Buffer) => output("stdout", d));
  channel.stderr.on("data", (d: Buffer) => output("stderr", d));
  const exited = new Promise<RunEnd>((resolve) => {
    let exit: { code: number | null; signal: string | null } | undefined;
    channel.on("exit", (code: number | null, sig?: string) => (exit = { code, signal: sig ?? null }));
    const finish = () => {
      if (!exit && !conn.isOpen()) return resolve({ kind: "failed", message: `connection to ${where} dropped during the run; the run is lost and its server is cleaned up on reconnect` });
      resolve({ kind: "exited", code: exit?.code ?? null, signal: exit?.signal ?? null });
    };
    channel.on("close", finish);
    conn.dropped.then(() => setTimeout(finish, 0));
  });
  const call = sftpCaller(conn, where);
  const files = sftpFiles(sftp, call);
  const read = async (name: string): Promise<string | null> => {
    if (container) {
      // Written by the container's root with mode 0600: the engine copies it out of the running container.
      const r = await conn.exec(`docker cp ${q(`${container}:${CONTAINER_OUT}/${name}`)} - | tar -xO`, MAX_RESULT_BYTES).catch(() => null);
      return r?.code === 0 && r.stdout ? r.stdout : null;
    }
    const path = join(outDir, name);
    const st = await call<{ size: number }>((done) => sftp.stat(path, done)).catch(() => null);
    if (st === null || st.size > MAX_RESULT_BYTES) return null;
    return call<Buffer>((done) => sftp.readFile(path, done)).then((b) => b.toString("utf8"), () => null);
  };
  return {
    inDir,
    outDir,
    files,
    read,
    exited,
    async kill() {
      sftp.end();
      // Over a dropped connection nothing can be removed now: the reconnect's sweep does it.
      await conn.exec(cleanup).catch((e: Error) => log.warn(`could not clean up ${dir} on ${where}: ${e.message}`));
      await exited;
    },
  };
}
