// Runs evaluations on a remote GPU host over SSH: the request goes up by SFTP into a fresh directory,
// the harness runs there (in the same sandbox container as the docker executor, or directly with the
// host's python3 when it has no Docker), output streams back, and the result comes down. The remote
// run is bounded by the same wall-clock limit, enforced by killing its whole process tree.
import { homedir } from "node:os";
import { existsSync } from "node:fs";
import { z } from "zod";
import type { EvaluationRequest } from "../../core/contracts.ts";
import type { Logger } from "../../core/log.ts";
import { defineExecutor } from "../../core/plugin.ts";
import { harnessArgs, limitOptions, REQUEST_FILE, RESULT_FILE, resultOf, wallClockLimitMs, type RunEnd } from "./harness.ts";
import { logStream, type LogStream } from "./log-stream.ts";
import { CONTAINER_OUT, dockerRunArgs, LABEL_VALIDATOR, MODES, oneRunCommand, requireWorkerDrop, SandboxOptions, sandboxSpec } from "./sandbox.ts";
import { ConnectionLost, sshHost, type Session } from "./ssh-connection.ts";

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
  remoteTmp: z.string().startsWith("/").default("/tmp").describe("Where each run gets its own `mktemp -d` directory on the host."),
  ...limitOptions(),
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

  // Runs that a dropped connection or a crashed validator left behind: kill them, remove their dirs.
  const cleanStale = async (s: Session, log: Logger) => {
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

  return {
    async init(log) {
      await host.session(log, new AbortController().signal);
    },

    async evaluate(request: EvaluationRequest, ctx) {
      const log = ctx.log.child({ executor: "ssh", host: host.where, submission: request.submission_id, run: request.run_index });
      if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
      let session: Session;
      try {
        session = await host.session(log, ctx.signal);
      } catch (e) {
        if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
        return resultOf(request, { kind: "failed", message: `cannot connect to ${host.where}: ${(e as Error).message}` }, null, "");
      }
      const output = logStream(log, opts.maxLogBytes);
      let dir: string | undefined;
      let container: string | undefined;
      try {
        const made = await session.exec(`D=$(mktemp -d ${q(prefix)}XXXXXXXX) && chmod 711 "$D" && mkdir -m 700 "$D/in" "$D/out" && mkdir -m 1777 "$D/tmp" && echo "$D"`);
        dir = made.stdout.trim();
        if (made.code !== 0 || !dir.startsWith(prefix)) throw new Error(`cannot create a run directory on ${host.where}: ${made.stderr.trim()}`);
        const sftp = await session.sftp();
        try {
          await new Promise<void>((resolve, reject) =>
            sftp.writeFile(`${dir}/in/${REQUEST_FILE}`, JSON.stringify(request), { mode: MODES.request }, (e) => (e ? reject(e) : resolve())),
          );
        } finally {
          sftp.end();
        }

        let command: string;
        if (opts.mode === "docker") {
          const run = { session: request.task_id, submissionId: request.submission_id, command: oneRunCommand() };
          const spec = sandboxSpec(opts, run, { inDir: `${dir}/in`, outDir: `${dir}/out` });
          container = spec.name;
          command = `echo $$ > ${q(`${dir}/pid`)} && exec docker ${dockerRunArgs(opts, opts, spec).map(q).join(" ")}`;
        } else {
          const env = ["PATH=$PATH", "HOME=$HOME", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1", "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", `TMPDIR=${q(`${dir}/tmp`)}`];
          const args = harnessArgs(`${dir}/in/${REQUEST_FILE}`, `${dir}/out/${RESULT_FILE}`).map(q).join(" ");
          command = `cd ${q(opts.remoteRepo!)} && echo $$ > ${q(`${dir}/pid`)} && exec env -i ${env.join(" ")} ${q(opts.python)} ${args}`;
        }
        const kill = container ? `docker kill ${q(container)} >/dev/null 2>&1; true` : `${KILL_RUN}; killrun ${q(dir)}`;
        const end = await runRemote(session, command, kill, wallClockLimitMs(request, opts), ctx.signal, output, host.where);
        output.end();
        const document = end.kind === "exited" ? await fetchResult(session, dir, container) : null;
        const result = resultOf(request, end, document, output.tail());
        log.info("evaluation finished", { success: result.success, tps: result.tps, error: result.error?.code ?? null });
        return container ? requireWorkerDrop(request, result) : result;
      } catch (e) {
        output.end();
        const message = e instanceof ConnectionLost ? `${e.message}; the run is lost and will be cleaned up on reconnect` : `ssh executor: ${(e as Error).message}`;
        return resultOf(request, { kind: "failed", message }, null, output.tail());
      } finally {
        if (dir && session.isOpen()) {
          const removeContainer = container ? `docker rm -f ${q(container)} >/dev/null 2>&1; ` : "";
          await session.exec(`${removeContainer}${KILL_RUN}; killrun ${q(dir)}; rm -rf ${q(dir)}`).catch((e: Error) => log.warn(`could not clean up ${dir}: ${e.message}`));
        }
      }
    },

    async close() {
      host.close();
    },
  };
});

/** Runs the command on its own channel, killing it remotely at the limit or on abort. */
async function runRemote(session: Session, command: string, kill: string, limitMs: number, signal: AbortSignal, output: LogStream, where: string): Promise<RunEnd> {
  const channel = await session.start(command);
  return new Promise<RunEnd>((resolve) => {
    let stopped: RunEnd | undefined;
    let exit: { code: number | null; signal: string | null } | undefined;
    const stop = (why: RunEnd) => {
      if (stopped) return;
      stopped = why;
      session.exec(kill).catch(() => channel.close());
    };
    const timer = setTimeout(() => stop({ kind: "timeout", limitMs }), limitMs);
    const onAbort = () => stop({ kind: "cancelled" });
    signal.addEventListener("abort", onAbort, { once: true });
    channel.on("data", (d: Buffer) => output.write("stdout", d));
    channel.stderr.on("data", (d: Buffer) => output.write("stderr", d));
    channel.on("exit", (code: number | null, sig?: string) => (exit = { code, signal: sig ?? null }));
    const finish = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (stopped) return resolve(stopped);
      if (!exit && !session.isOpen()) return resolve({ kind: "failed", message: `connection to ${where} dropped during the run; it is cleaned up on reconnect` });
      resolve({ kind: "exited", code: exit?.code ?? null, signal: exit?.signal ?? null });
    };
    channel.on("close", finish);
    session.dropped.then(() => setTimeout(finish, 0));
  });
}

async function fetchResult(session: Session, dir: string, container: string | undefined): Promise<string | null> {
  if (container) {
    // Written by the container's root with mode 0600: the engine copies it out of the stopped container.
    const r = await session.exec(`docker cp ${q(`${container}:${CONTAINER_OUT}/${RESULT_FILE}`)} - | tar -xO`, MAX_RESULT_BYTES);
    return r.code === 0 && r.stdout ? r.stdout : null;
  }
  const sftp = await session.sftp();
  try {
    const path = `${dir}/out/${RESULT_FILE}`;
    const size = await new Promise<number | null>((resolve) => sftp.stat(path, (e, st) => resolve(e ? null : st.size)));
    if (size === null || size > MAX_RESULT_BYTES) return null;
    return await new Promise<string | null>((resolve) => sftp.readFile(path, (e, data) => resolve(e ? null : data.toString("utf8"))));
  } finally {
    sftp.end();
  }
}
