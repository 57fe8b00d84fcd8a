// The evaluation container's isolation policy, written once and rendered two ways: as Docker Engine API
// create options (the docker executor, through dockerode) and as `docker run` arguments (the ssh
// executor on a remote GPU host). Both run the same sandbox, so hardening one hardens both.
import type { ContainerCreateOptions } from "dockerode";
import { z } from "zod";
import type { EvaluationRequest } from "../../core/contracts.ts";
import { HARNESS_SCRIPT, REQUEST_FILE, RESULT_FILE } from "./harness.ts";

const size = z.string().regex(/^\d+[kmg]?$/i, "a size such as 16g");

export const GpuSelection = z.union([z.enum(["all", "none"]), z.array(z.string().regex(/^[\w-]+$/, "a GPU index or UUID")).min(1)]);
export type GpuSelection = z.infer<typeof GpuSelection>;

export const SandboxOptions = z.object({
  image: z.string().min(1).default("crusades-eval:latest"),
  /** `all`, `none` (CPU only) or device indices/UUIDs such as ["0", "1"]. */
  gpus: GpuSelection.default("all"),
  /** Working directory in the image that holds environments/templar and hparams/models. */
  appDir: z.string().startsWith("/").default("/app"),
  /** Size of each tmpfs (/tmp and the compile caches). */
  tmpfsSize: size.default("4g"),
  /** Label value that marks this validator's containers, so a restarted validator removes its strays. */
  validatorId: z.string().regex(/^[\w.-]+$/, "letters, digits, '.', '_' or '-'").default("default"),
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
const CACHE_DIR = "/var/cache/crusades";

export const LABEL_VALIDATOR = "crusades.validator";
export const LABEL_TASK = "crusades.task";

export function bytes(s: string): number {
  const m = /^(\d+)([kmg]?)$/i.exec(s);
  if (!m) throw new Error(`not a size: ${s}`);
  return Number(m[1]) * 1024 ** " kmg".indexOf((m[2] || " ").toLowerCase());
}

export interface SandboxSpec {
  name: string;
  labels: Record<string, string>;
  command: string[];
  env: Record<string, string>;
  /** Host directories: `in` (request, read-only) and `out` (result, the only writable bind mount). */
  inDir: string;
  outDir: string;
  tmpfs: Record<string, string>;
}

export function sandboxSpec(opts: SandboxOptions, request: EvaluationRequest, dirs: { inDir: string; outDir: string }): SandboxSpec {
  const tmpfs = `rw,exec,nosuid,nodev,size=${opts.tmpfsSize},mode=1777`;
  return {
    name: `crusades-eval-${request.task_id}`,
    labels: { [LABEL_VALIDATOR]: opts.validatorId, [LABEL_TASK]: request.task_id, "crusades.submission": request.submission_id.slice(0, 200) },
    command: ["python3", HARNESS_SCRIPT, "--request", `${CONTAINER_IN}/${REQUEST_FILE}`, "--result", `${CONTAINER_OUT}/${RESULT_FILE}`],
    env: {
      PYTHONUNBUFFERED: "1",
      PYTHONDONTWRITEBYTECODE: "1",
      HF_HUB_OFFLINE: "1",
      TRANSFORMERS_OFFLINE: "1",
      HOME: "/tmp",
      TMPDIR: "/tmp",
      // exec is allowed on these tmpfs because Triton and Inductor load the .so files they compile.
      XDG_CACHE_HOME: CACHE_DIR,
      TRITON_CACHE_DIR: `${CACHE_DIR}/triton`,
      TORCHINDUCTOR_CACHE_DIR: `${CACHE_DIR}/inductor`,
    },
    ...dirs,
    tmpfs: { "/tmp": tmpfs, [CACHE_DIR]: tmpfs },
  };
}

export function createOptions(opts: SandboxOptions, limits: Limits, spec: SandboxSpec): ContainerCreateOptions {
  return {
    name: spec.name,
    Image: opts.image,
    Cmd: spec.command,
    WorkingDir: opts.appDir,
    Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
    Labels: spec.labels,
    NetworkDisabled: true,
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: {
      NetworkMode: "none",
      ReadonlyRootfs: true,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      PidsLimit: limits.pidsLimit,
      Memory: bytes(limits.memory),
      MemorySwap: bytes(limits.memory),
      ShmSize: bytes(limits.shmSize),
      Tmpfs: spec.tmpfs,
      Binds: [`${spec.inDir}:${CONTAINER_IN}:ro`, `${spec.outDir}:${CONTAINER_OUT}:rw`],
      DeviceRequests: deviceRequests(opts.gpus),
      Init: true,
    },
  };
}

function deviceRequests(gpus: GpuSelection) {
  if (gpus === "none") return [];
  const base = { Driver: "", Capabilities: [["gpu"]], Options: {} };
  return gpus === "all" ? [{ ...base, Count: -1 }] : [{ ...base, Count: 0, DeviceIDs: gpus }];
}

/** The same container as `createOptions`, as `docker run` arguments (without the leading `docker`). */
export function dockerRunArgs(opts: SandboxOptions, limits: Limits, spec: SandboxSpec): string[] {
  const args = ["run", "--rm", "--name", spec.name, "--init", "--network", "none", "--read-only", "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges", "--pids-limit", String(limits.pidsLimit), "--memory", limits.memory,
    "--memory-swap", limits.memory, "--shm-size", limits.shmSize, "--workdir", opts.appDir,
    "-v", `${spec.inDir}:${CONTAINER_IN}:ro`, "-v", `${spec.outDir}:${CONTAINER_OUT}:rw`];
  if (opts.gpus !== "none") args.push("--gpus", opts.gpus === "all" ? "all" : `"device=${opts.gpus.join(",")}"`);
  for (const [k, v] of Object.entries(spec.labels)) args.push("--label", `${k}=${v}`);
  for (const [path, o] of Object.entries(spec.tmpfs)) args.push("--tmpfs", `${path}:${o}`);
  for (const [k, v] of Object.entries(spec.env)) args.push("-e", `${k}=${v}`);
  args.push(opts.image, ...spec.command);
  return args;
}
