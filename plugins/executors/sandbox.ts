// The evaluation container's isolation policy, written once and rendered two ways: as Docker Engine API
// create options (the docker executor, through dockerode) and as `docker run` arguments (the ssh
// executor on a remote GPU host). Both run the same sandbox, so hardening one hardens both.
//
// Who may touch what inside: env.py's supervisor starts as uid 0 holding only the capabilities it needs
// to fork the worker under another uid (SETUID, SETGID), hand it its run directory (CHOWN), read back
// and remove what the worker wrote there and reach the run directory whoever owns it on the host
// (DAC_OVERRIDE), and kill it (KILL). The worker drops to an unprivileged uid, which clears every
// capability, and with no-new-privileges it can never regain one; since docker's seccomp profile refuses
// namespaces, that uid is the worker's wall (environments/templar/contain.py): everything it started is
// killed by one kill(-1) under it, and what it left in /tmp, /dev/shm, /dev/mqueue and SysV IPC is removed by owner. What it can park
// outside its processes (files in the tmpfs mounts, SysV segments, message queues) is bounded here so that the harness always keeps
// half the container's memory: the OOM killer then finds only the worker's processes (oom_score_adj 1000) to take. The request (seed included) and
// the result directory are 0600/0700, so the worker can read neither; the root filesystem is read-only,
// only /tmp (and /dev/shm) can be written, and there is no network. The token shard is a read-only bind.
import type { ContainerCreateOptions } from "dockerode";
import { posix } from "node:path";
import { z } from "zod";
import { failedResult, type EvaluationRequest, type EvaluationResult } from "../../core/contracts.ts";
import { loadHParams } from "../../core/hparams.ts";
import { size } from "./harness.ts";
import { serveArgs } from "./session.ts";
import type { Slot } from "./slots.ts";

export const SandboxOptions = z.object({
  image: z.string().min(1).default("crusades-eval:latest").describe("Evaluation image (environments/templar/Dockerfile)."),
  appDir: z.string().startsWith("/").default("/app").describe("Directory in the image holding environments/templar and hparams/models."),
  tmpfsSize: size("4g").default("4g").describe("Largest size of the /tmp tmpfs, which also holds the worker's compile caches; it is cut to what keeps /tmp + /dev/shm within half the memory limit."),
  validatorId: z.string().regex(/^[\w.-]+$/, "letters, digits, '.', '_' or '-'").default("default").describe("Labels this validator's containers and remote run dirs, so a restart removes what a crash left."),
  dataPath: z.string().min(1).nullable().optional().describe("The token shard on the machine that runs the container (docker: this one; ssh: the remote host), mounted read-only where the harness reads hparams `benchmark_data_path`. Default: that path in this checkout (docker), under remoteRepo or the login's home (ssh); null: none."),
});
export type SandboxOptions = z.infer<typeof SandboxOptions>;

export interface Limits {
  memory: string;
  shmSize: string;
  pidsLimit: number;
}

/** Where the run directory's two halves appear inside the container. */
export const CONTAINER_IN = "/run/crusades/in";
export const CONTAINER_OUT = "/run/crusades/out";
const SUPERVISOR_CAPS = ["SETUID", "SETGID", "CHOWN", "KILL", "DAC_OVERRIDE"];
/** Mode bits for the host side of the run directory: the worker's uid gets in neither. */
export const MODES = { dir: 0o700, request: 0o600 } as const;

export const LABEL_VALIDATOR = "crusades.validator";
/** One container: a warm server's session (all runs of one submission), or a single run's task id. */
export const LABEL_SESSION = "crusades.session";
export const LABEL_SUBMISSION = "crusades.submission";

/** The container's command: a warm server (session.ts) for all runs of one submission. */
export const serveCommand = (idleSeconds: number) => ["python3", ...serveArgs(CONTAINER_IN, CONTAINER_OUT, idleSeconds)];

/** The path requests name for the token shard (hparams `benchmark_data_path`); null when they name none. */
export const servedDataPath = () => loadHParams().benchmark_data_path;

/** Where the harness in the container reads the shard a request names: a relative path is inside appDir. */
export const containerDataPath = (opts: SandboxOptions, dataPath: string) => (posix.isAbsolute(dataPath) ? dataPath : posix.join(opts.appDir, dataPath));

/** One field of `--mount`, which docker parses as CSV: a path may hold commas or quotes. */
const csv = (field: string) => `"${field.replace(/"/g, '""')}"`;

export function bytes(s: string): number {
  const m = /^(\d+)([kmg]?)$/i.exec(s);
  if (!m) throw new Error(`not a size: ${s}`);
  return Number(m[1]) * 1024 ** " kmg".indexOf((m[2] || " ").toLowerCase());
}

export interface SandboxSpec {
  name: string;
  user: string;
  capAdd: string[];
  labels: Record<string, string>;
  command: string[];
  env: Record<string, string>;
  /** Host directories: `in` (requests, read-only) and `out` (results, the only writable bind mount). */
  inDir: string;
  outDir: string;
  /** The token shard: a host file, bind-mounted read-only at target. */
  shard: { source: string; target: string } | null;
  tmpfs: Record<string, string>;
}

export function sandboxSpec(
  opts: SandboxOptions,
  run: { session: string; submissionId: string; command: string[] },
  dirs: { inDir: string; outDir: string; shard?: { source: string; target: string } | null },
): SandboxSpec {
  return {
    name: `crusades-eval-${run.session}`,
    user: "0:0",
    capAdd: SUPERVISOR_CAPS,
    labels: { [LABEL_VALIDATOR]: opts.validatorId, [LABEL_SESSION]: run.session, [LABEL_SUBMISSION]: run.submissionId.slice(0, 200) },
    command: run.command,
    env: {
      PYTHONUNBUFFERED: "1",
      PYTHONDONTWRITEBYTECODE: "1",
      HF_HUB_OFFLINE: "1",
      TRANSFORMERS_OFFLINE: "1",
      HOME: "/tmp",
      TMPDIR: "/tmp",
    },
    inDir: dirs.inDir,
    outDir: dirs.outDir,
    shard: dirs.shard ?? null,
    // exec: Triton and Inductor load the .so files they compile into the worker's home under /tmp. Sizes are
    // added where the limits are known (tmpfsWithSize); inodes are bounded too, as each costs memory no size
    // counts. /dev/shm is mounted here rather than by ShmSize, which cannot bound its inodes.
    tmpfs: { "/tmp": `rw,exec,nosuid,nodev,nr_inodes=${TMP_INODES},mode=1777`, "/dev/shm": `rw,noexec,nosuid,nodev,nr_inodes=${TMP_INODES},mode=1777` },
  };
}

const TMP_INODES = 262144;
/**
 * IPC namespace settings: a SysV segment no process has attached is destroyed (it cannot hold memory past its
 * creator), and at most 32 message queues of 16 KiB exist.
 */
export const SYSCTLS = { "kernel.shm_rmid_forced": "1", "kernel.msgmni": "32" };

/**
 * The /tmp tmpfs's size: tmpfsSize, cut so that /tmp and /dev/shm together (what a worker can fill and leave
 * until the sweep, charged to no process) stay within half the memory limit, the other half being the harness's.
 */
export function tmpfsBytes(opts: SandboxOptions, limits: Limits): number {
  const room = Math.floor(bytes(limits.memory) / 2) - bytes(limits.shmSize);
  if (room < 64 << 20) throw new Error(`shmSize (${limits.shmSize}) leaves /tmp no room within half of memory (${limits.memory}): memory must be at least twice shmSize + 64m`);
  return Math.min(bytes(opts.tmpfsSize), room);
}

const tmpfsWithSize = (opts: SandboxOptions, limits: Limits, spec: SandboxSpec) =>
  Object.fromEntries(Object.entries(spec.tmpfs).map(([path, o]) => [path, `${o},size=${path === "/dev/shm" ? bytes(limits.shmSize) : tmpfsBytes(opts, limits)}`]));

/**
 * env.py keeps the worker under its own uid when the image's Python stack is not readable by others;
 * in this sandbox that uid is 0 with capabilities, so such a result is not trusted.
 */
export function requireWorkerDrop(request: EvaluationRequest, result: EvaluationResult): EvaluationResult {
  const uid = result.diagnostics.worker_uid;
  if (uid === undefined || uid !== 0) return result;
  return failedResult(request, "executor_error", "the harness ran the submission as uid 0 (it could not drop privileges: is the image's Python stack readable by other users?)");
}

/** The devices a container sees: its slot's GPUs by device request (none when null) and its cores as its cpuset. */
export type SlotDevices = Pick<Slot, "gpus" | "cpus"> & Partial<Pick<Slot, "workerUid">>;

/** The container's environment: the sandbox's, and the slot's worker uid where the slot names one. */
function containerEnv(spec: SandboxSpec, slot: SlotDevices): [string, string][] {
  return [...Object.entries(spec.env), ...(slot.workerUid === undefined ? [] : [["CRUSADES_WORKER_UID", String(slot.workerUid)] as [string, string]])];
}

export function createOptions(opts: SandboxOptions, limits: Limits, spec: SandboxSpec, slot: SlotDevices): ContainerCreateOptions {
  return {
    name: spec.name,
    Image: opts.image,
    // Whatever entrypoint the image declares, the harness command is the whole command line.
    Entrypoint: spec.command.slice(0, 1),
    Cmd: spec.command.slice(1),
    User: spec.user,
    WorkingDir: opts.appDir,
    Env: containerEnv(spec, slot).map(([k, v]) => `${k}=${v}`),
    Labels: spec.labels,
    NetworkDisabled: true,
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: {
      NetworkMode: "none",
      ReadonlyRootfs: true,
      CapDrop: ["ALL"],
      CapAdd: spec.capAdd,
      SecurityOpt: ["no-new-privileges"],
      PidsLimit: limits.pidsLimit,
      Memory: bytes(limits.memory),
      MemorySwap: bytes(limits.memory),
      ShmSize: bytes(limits.shmSize),
      Tmpfs: tmpfsWithSize(opts, limits, spec),
      Sysctls: SYSCTLS,
      Binds: [`${spec.inDir}:${CONTAINER_IN}:ro`, `${spec.outDir}:${CONTAINER_OUT}:rw`],
      // A mount, not a bind: a missing source is an error instead of an empty directory made on the host.
      Mounts: spec.shard ? [{ Type: "bind", Source: spec.shard.source, Target: spec.shard.target, ReadOnly: true }] : [],
      DeviceRequests: slot.gpus ? [{ Driver: "", Count: 0, DeviceIDs: slot.gpus, Capabilities: [["gpu"]], Options: {} }] : [],
      ...(slot.cpus ? { CpusetCpus: slot.cpus } : {}),
      Init: true,
    },
  };
}

/** The same container as `createOptions`, as `docker run` arguments (without the leading `docker`; not --rm: the caller copies the result out first). */
export function dockerRunArgs(opts: SandboxOptions, limits: Limits, spec: SandboxSpec, slot: SlotDevices): string[] {
  const args = ["run", "--name", spec.name, "--init", "--user", spec.user, "--network", "none", "--read-only",
    "--cap-drop", "ALL", ...spec.capAdd.flatMap((c) => ["--cap-add", c]), "--security-opt", "no-new-privileges", "--pids-limit", String(limits.pidsLimit), "--memory", limits.memory,
    "--memory-swap", limits.memory, "--shm-size", limits.shmSize, "--workdir", opts.appDir,
    "-v", `${spec.inDir}:${CONTAINER_IN}:ro`, "-v", `${spec.outDir}:${CONTAINER_OUT}:rw`];
  if (slot.gpus) args.push("--gpus", `"device=${slot.gpus.join(",")}"`);
  if (slot.cpus) args.push("--cpuset-cpus", slot.cpus);
  for (const [k, v] of Object.entries(spec.labels)) args.push("--label", `${k}=${v}`);
  if (spec.shard) args.push("--mount", ["type=bind", csv(`src=${spec.shard.source}`), csv(`dst=${spec.shard.target}`), "readonly"].join(","));
  for (const [path, o] of Object.entries(tmpfsWithSize(opts, limits, spec))) args.push("--tmpfs", `${path}:${o}`);
  for (const [k, v] of Object.entries(SYSCTLS)) args.push("--sysctl", `${k}=${v}`);
  for (const [k, v] of containerEnv(spec, slot)) args.push("-e", `${k}=${v}`);
  args.push("--entrypoint", spec.command[0]!, opts.image, ...spec.command.slice(1));
  return args;
}
