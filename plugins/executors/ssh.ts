// Runs evaluations on remote GPU hosts over SSH: each host offers slots of the device pool (slots.ts),
// and on each slot one warm server (session.ts) per submission, in a fresh remote directory, in the same
// sandbox container as the docker executor (or directly with the host's python3 when it has no Docker).
// Requests go up by SFTP, output streams back, results come down; a run that overruns takes the server
// with it (the container, or the remote process tree).
import { createHash, randomBytes } from "node:crypto";
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
import { CONTAINER_OUT, containerDataPath, dockerRunArgs, LABEL_VALIDATOR, requireWorkerDrop, SandboxOptions, sandboxSpec, servedDataPath, serveCommand } from "./sandbox.ts";
import { SERVER_IDLE_MARGIN_SECONDS, serveArgs, SessionPool, type Output, type ServerFiles, type ServerHandle } from "./session.ts";
import { buildSlots, DEVICES_SCRIPT, GpuSelection, hostDevicesOf, poolOptions, probeAll, probeArgs, slotPresent, SlotPool, SlotsOption, type Slot } from "./slots.ts";
import { ConnectionLost, sshHost, type Session as Connection } from "./ssh-connection.ts";

const MAX_RESULT_BYTES = 16 << 20;

const HostEntry = z
  .object({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).optional(),
    user: z.string().min(1).optional(),
    gpus: GpuSelection.optional(),
    slots: SlotsOption.optional(),
  })
  .strict();

export const SshExecutorOptions = SandboxOptions.extend({
  ...poolOptions("all"),
  probe: z.boolean().default(true).describe("At start, run a tiny matmul in each slot's sandbox on its host and check it sees exactly the slot's devices."),
  host: z.string().min(1).optional().describe("The GPU host (or several in hosts)."),
  hosts: z
    .array(HostEntry)
    .min(1)
    .optional()
    .describe("Several hosts, each with its own slots: [{ host, port?, user?, gpus?, slots? }]; what an entry leaves out comes from the options here."),
  port: z.number().int().min(1).max(65535).default(22).describe("SSH port."),
  user: z.string().min(1).describe("Login on the host (in its docker group for docker mode)."),
  privateKeyPath: z.string().min(1).optional().describe("Private key file; without one, the ssh-agent (`agent` or $SSH_AUTH_SOCK)."),
  passphrase: z.string().optional().describe("Passphrase of the private key."),
  agent: z.string().min(1).optional().describe("ssh-agent socket path."),
  knownHostsPath: z.string().min(1).default("~/.ssh/known_hosts").describe("known_hosts file the host key must be in."),
  trustUnknownHost: z.boolean().default(false).describe("Accept a host key that is not in known_hosts (logged with its fingerprint). Never in production."),
  mode: z.enum(["docker", "direct"]).default("docker").describe("docker: the sandbox container (image present on the host); direct: python3 on the host, the worker behind the harness's namespace wall only (no memory, CPU or network limits)."),
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
  .refine((o) => (o.host === undefined) !== (o.hosts === undefined), { path: ["host"], message: "give host, or hosts, not both" })
  .refine((o) => o.mode !== "direct" || o.remoteRepo, { path: ["remoteRepo"], message: "direct mode needs the path of a checkout on the host" })
  .refine((o) => o.mode !== "direct" || o.dataPath === undefined, { path: ["dataPath"], message: "direct mode reads the token shard where requests name it, inside remoteRepo; dataPath is for docker mode" })
  .refine((o) => o.privateKeyPath || o.agent || process.env.SSH_AUTH_SOCK, { path: ["privateKeyPath"], message: "give a private key path, or an ssh-agent (agent or $SSH_AUTH_SOCK)" })
  .refine((o) => !o.privateKeyPath || existsSync(o.privateKeyPath), { path: ["privateKeyPath"], message: "no such file" });
export type SshExecutorOptions = z.infer<typeof SshExecutorOptions>;

/** Single-quotes for the remote POSIX shell. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The token shard on a host for requests naming `dataPath`, relative to shardBase: docker mode mounts
 * `dataPath` (default: hparams `benchmark_data_path`), direct mode reads the request's own path.
 */
function remoteShardPath(opts: SshExecutorOptions, dataPath: string): string | null {
  if (opts.mode === "direct") return dataPath;
  return dataPath === servedDataPath() && opts.dataPath !== null ? (opts.dataPath ?? dataPath) : null;
}

/** Where a relative shard path starts on the host: remoteRepo, else the login's home (a bare `cd`). */
const shardBase = (opts: SshExecutorOptions) => `cd ${opts.remoteRepo ? q(opts.remoteRepo) : ""}`;

// Shell helpers run on the remote host. `killrun DIR` kills the process tree of the run in DIR (the pid
// it recorded, checked against its command line so a recycled pid is never hit): frozen top-down with
// SIGSTOP until no new member appears, then SIGKILLed together with its process group.
const KILL_RUN = [
  `tree() { ps -e -o pid= -o ppid= | awk -v r="$1" '{k[$2]=k[$2]" "$1} END{n=1;q[1]=r;for(i=1;i<=n;i++){c=split(k[q[i]],a," ");for(j=1;j<=c;j++)q[++n]=a[j]};for(i=1;i<=n;i++)print q[i]}'; }`,
  `killrun() { p=$(cat "$1/pid" 2>/dev/null) || return 0; grep -qF "$1" "/proc/$p/cmdline" 2>/dev/null || return 0; all=""; for r in 1 2 3 4; do t=$(tree "$p"); kill -s STOP $t 2>/dev/null; all="$all $t"; done; kill -s KILL $all 2>/dev/null; kill -s KILL -- "-$p" 2>/dev/null; return 0; }`,
].join("; ");

/** One host of the pool: its connection, where its servers live, and the label its containers carry. */
interface Host {
  name: string;
  conn: ReturnType<typeof sshHost>;
  prefix: string;
  /** Tells this host's containers from another entry's on the same engine (two ports of one machine). */
  tag: string;
  entry: { gpus: GpuSelection; slots?: SshExecutorOptions["slots"] };
}

const LABEL_HOST = "crusades.host";

export const sshExecutor = defineExecutor("ssh", SshExecutorOptions, (opts) => {
  const entries = opts.hosts ?? [{ host: opts.host! }];
  const hosts: Host[] = entries.map((e) => {
    const port = e.port ?? opts.port;
    const user = e.user ?? opts.user;
    const tag = createHash("sha256").update(`${user}@${e.host}:${port}`).digest("hex").slice(0, 8);
    const prefix = `${opts.remoteTmp}/crusades-ssh-${opts.validatorId}-${tag}-`;
    const name = port === 22 ? e.host : `${e.host}:${port}`;
    // Servers that a dropped connection or a crashed validator left behind: kill them, remove their dirs.
    const cleanStale = async (s: Connection, log: Logger) => {
      const script = [
        KILL_RUN,
        `n=0; for d in ${q(prefix)}*; do [ -d "$d" ] || continue; killrun "$d"; rm -rf "$d"; n=$((n+1)); done`,
        opts.mode === "docker" ? `ids=$(docker ps -aq --filter label=${LABEL_VALIDATOR}=${opts.validatorId} --filter label=${LABEL_HOST}=${tag}); [ -z "$ids" ] || { docker rm -f $ids >/dev/null; n=$((n+1)); }` : "true",
        "echo $n",
      ].join("; ");
      const r = await s.exec(script);
      const stale = r.stdout.trim();
      if (Number(stale) > 0) log.warn(`removed ${stale} stale run(s) left on ${conn.where} by an earlier connection`);
    };
    const conn = sshHost({ ...opts, host: e.host, port, user, knownHostsPath: opts.knownHostsPath.replace(/^~(?=\/)/, homedir()) }, cleanStale);
    return { name, conn, prefix, tag, entry: { gpus: e.gpus ?? opts.gpus, slots: e.slots ?? opts.slots } };
  });
  const hostOf = new Map<string, Host>();
  // Per slot, one server per submission, as in the docker executor: its runs there share the imports,
  // never a process, and the next submission's first run on the slot removes it.
  const sessions = new Map<string, SessionPool>();
  let slots: SlotPool | undefined;
  let ready: Promise<void> | undefined;
  const devicesOf = async (h: Host, log: Logger) => hostDevicesOf((await (await h.conn.session(log, new AbortController().signal)).exec(DEVICES_SCRIPT)).stdout);

  // Once per executor: every host connected, its slots built and probed; a failure fails the start with one line.
  const prepare = (log: Logger) =>
    (ready ??= (async () => {
      const all: Slot[] = [];
      for (const h of hosts) {
        const found = await devicesOf(h, log).catch((e: Error) => {
          throw new Error(`${h.conn.where}: ${e.message}`);
        });
        let own: Slot[];
        try {
          own = buildSlots(h.entry, found, h.name);
        } catch (e) {
          throw new Error(`hosts: ${(e as Error).message}`);
        }
        if (opts.probe) await probeAll(own, (slot) => probeRemote(h, opts, slot, log), log);
        for (const slot of own) {
          hostOf.set(slot.id, h);
          sessions.set(slot.id, new SessionPool({
            start: async (submissionId, l, output) => startServer(await h.conn.session(l, new AbortController().signal), opts, h, slot, submissionId, l, output),
            idleMs: opts.idleSeconds * 1000,
            exclusive: true,
          }));
        }
        all.push(...own);
      }
      slots = new SlotPool(all, {
        maxFailures: opts.maxSlotFailures,
        log,
        present: async (slot) => slotPresent(slot, await devicesOf(hostOf.get(slot.id)!, log)),
      });
    })().catch((e) => {
      ready = undefined;
      throw e;
    }));

  return {
    async init(log) {
      await prepare(log);
      // Every host connected now (a reconnect after a drop also sweeps what the drop left there).
      for (const h of hosts) await h.conn.session(log, new AbortController().signal);
    },
    slots: () => slots?.status() ?? [],

    async tokenShard(dataPath, log) {
      const path = remoteShardPath(opts, dataPath);
      if (path === null) return null;
      // Every host must hold the same bytes: a run may land on any of them.
      const found = await Promise.all(hosts.map(async (h) => {
        const r = await (await h.conn.session(log, new AbortController().signal)).exec(`${shardBase(opts)} && S=$(readlink -e -- ${q(path)}) && [ -f "$S" ] && sha256sum -- "$S"`);
        const m = /^([0-9a-f]{64}) [ *](.*)$/m.exec(r.stdout);
        if (r.code !== 0 || !m) throw new Error(`${h.conn.where} has no token shard at ${path}${path.startsWith("/") ? "" : ` (in ${opts.remoteRepo ?? "the login's home"})`}`);
        return { where: `${h.conn.where}:${m[2]}`, sha256: m[1]! };
      }));
      if (new Set(found.map((f) => f.sha256)).size > 1) throw new Error(`the hosts hold different token shards: ${found.map((f) => `${f.where} ${f.sha256}`).join(", ")}`);
      return { where: found.map((f) => f.where).join(", "), sha256: found[0]!.sha256 };
    },

    async evaluate(request: EvaluationRequest, ctx) {
      const log = ctx.log.child({ executor: "ssh", submission: request.submission_id, run: request.run_index });
      if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
      try {
        await prepare(log);
      } catch (e) {
        return resultOf(request, { kind: "failed", message: `ssh executor not ready: ${(e as Error).message}` }, null, "");
      }
      const warm = (slot: Slot) => sessions.get(slot.id)!.has(request.submission_id);
      return slots!.evaluate(request, ctx, warm, async (slot) => {
        const h = hostOf.get(slot.id)!;
        const slog = log.child({ host: h.conn.where, slot: slot.id });
        try {
          await h.conn.session(slog, ctx.signal);
        } catch (e) {
          if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
          return resultOf(request, { kind: "failed", message: `cannot connect to ${h.conn.where}: ${(e as Error).message}` }, null, "");
        }
        const output = logStream(slog, opts.maxLogBytes);
        const { end, document } = await sessions.get(slot.id)!.evaluate(request.submission_id, request, wallClockLimitMs(request, opts), ctx.signal, output, slog);
        output.end();
        const result = resultOf(request, end, document, output.tail());
        slog.info("evaluation finished", { success: result.success, tps: result.tps, error: result.error?.code ?? null });
        return opts.mode === "docker" ? requireWorkerDrop(request, result) : result;
      });
    },

    async close() {
      await Promise.all([...sessions.values()].map((p) => p.close()));
      for (const h of hosts) h.conn.close();
    },
  };
});

/** Environment and wrapper that give a direct-mode process only its slot's devices (GPUs by CUDA, cores by affinity). */
function directDevices(slot: Slot): { env: string[]; wrap: string } {
  // PCI order, so an index means what nvidia-smi says it means.
  const env = ["CUDA_DEVICE_ORDER=PCI_BUS_ID", `CUDA_VISIBLE_DEVICES=${slot.gpus ? slot.gpus.join(",") : ""}`, `CRUSADES_WORKER_UID=${slot.workerUid}`];
  return { env, wrap: slot.cpus ? `taskset -c ${slot.cpus} ` : "" };
}

/** The start-up probe on the slot's host, in the slot's sandbox (docker mode) or with its devices (direct). */
async function probeRemote(h: Host, opts: SshExecutorOptions, slot: Slot, log: Logger): Promise<string> {
  const conn = await h.conn.session(log, new AbortController().signal);
  let command: string;
  if (opts.mode === "docker") {
    const made = await conn.exec(`D=$(mktemp -d ${q(h.prefix)}XXXXXXXX) && mkdir -m 700 "$D/in" "$D/out" && echo "$D"`);
    const dir = made.stdout.trim();
    if (made.code !== 0 || !dir.startsWith(h.prefix)) throw new Error(`cannot create a directory on ${h.conn.where}: ${made.stderr.trim()}`);
    const spec = sandboxSpec(opts, { session: `probe-${randomBytes(8).toString("hex")}`, submissionId: "probe", command: ["python3", ...probeArgs(slot)] }, { inDir: `${dir}/in`, outDir: `${dir}/out` });
    spec.labels[LABEL_HOST] = h.tag;
    const args = dockerRunArgs(opts, opts, spec, slot);
    command = `docker ${args.map(q).join(" ")} 2>&1; docker rm -f ${q(spec.name)} >/dev/null 2>&1; rm -rf ${q(dir)}`;
  } else {
    const { env, wrap } = directDevices(slot);
    command = `cd ${q(opts.remoteRepo!)} && env ${env.join(" ")} ${wrap}${q(opts.python)} ${probeArgs(slot).map(q).join(" ")} 2>&1`;
  }
  return (await conn.exec(command)).stdout;
}

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
 * Starts a warm server for one submission in a fresh remote directory of ours alone (0700: in/ and out/,
 * bound into the sandbox or, in direct mode, covered in the worker's mount namespace; tmp/ the server's
 * TMPDIR in direct mode), on its own channel of the connection.
 */
async function startServer(conn: Connection, opts: SshExecutorOptions, h: Host, slot: Slot, submissionId: string, log: Logger, output: Output): Promise<ServerHandle> {
  const { prefix } = h;
  const where = h.conn.where;
  // Docker mode: the token shard's absolute path on the host, on the line after the directory when it is a file there.
  const served = opts.mode === "docker" ? servedDataPath() : null;
  const shardPath = served === null ? null : remoteShardPath(opts, served);
  const findShard = shardPath === null ? "" : ` && { (${shardBase(opts)} && S=$(readlink -e -- ${q(shardPath)}) && [ -f "$S" ] && echo "$S"); true; }`;
  const made = await conn.exec(`D=$(mktemp -d ${q(prefix)}XXXXXXXX) && chmod 700 "$D" && mkdir -m 700 "$D/in" "$D/out" "$D/tmp" && echo "$D"${findShard}`);
  const [dir = "", shard] = made.stdout.trim().split("\n");
  if (made.code !== 0 || !dir.startsWith(prefix)) throw new Error(`cannot create a run directory on ${where}: ${made.stderr.trim()}`);
  log.debug("remote run directory", { dir });
  const inDir = `${dir}/in`;
  const outDir = `${dir}/out`;
  const idle = opts.idleSeconds + SERVER_IDLE_MARGIN_SECONDS;
  let container: string | undefined;
  let command: string;
  if (opts.mode === "docker") {
    const mount = shard ? { source: shard, target: containerDataPath(opts, served!) } : null;
    const spec = sandboxSpec(opts, { session: randomBytes(12).toString("hex"), submissionId, command: serveCommand(idle) }, { inDir, outDir, shard: mount });
    spec.labels[LABEL_HOST] = h.tag;
    container = spec.name;
    command = `echo $$ > ${q(`${dir}/pid`)} && exec docker ${dockerRunArgs(opts, opts, spec, slot).map(q).join(" ")}`;
  } else {
    const devices = directDevices(slot);
    const env = ["PATH=$PATH", "HOME=$HOME", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1", "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", `TMPDIR=${q(`${dir}/tmp`)}`, ...devices.env];
    command = `cd ${q(opts.remoteRepo!)} && echo $$ > ${q(`${dir}/pid`)} && exec env -i ${env.join(" ")} ${devices.wrap}${q(opts.python)} ${serveArgs(inDir, outDir, idle).map(q).join(" ")}`;
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
