// Runs evaluations in locked-down containers on the validator's own Docker engine (the GPUs on this
// machine): one slot of the device pool per run (slots.ts), and on each slot one container per
// submission, serving its runs there (session.ts). The isolation policy itself lives in sandbox.ts.
import Docker from "dockerode";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import { z } from "zod";
import type { EvaluationRequest } from "../../core/contracts.ts";
import { repoRoot } from "../../core/hparams.ts";
import type { Logger } from "../../core/log.ts";
import { defineExecutor } from "../../core/plugin.ts";
import { fileSha256, limitOptions, resultOf, wallClockLimitMs, type RunEnd } from "./harness.ts";
import { logStream } from "./log-stream.ts";
import { CONTAINER_OUT, containerDataPath, createOptions, LABEL_VALIDATOR, MODES, requireWorkerDrop, SandboxOptions, sandboxSpec, servedDataPath, serveCommand } from "./sandbox.ts";
import { SERVER_IDLE_MARGIN_SECONDS, SessionPool, type Output, type ServerHandle } from "./session.ts";
import { buildSlots, localDevices, poolOptions, probeAll, probeArgs, slotPresent, SlotPool, type Slot } from "./slots.ts";

export const DockerExecutorOptions = SandboxOptions.extend({
  ...poolOptions("all"),
  probe: z.boolean().default(true).describe("At start, run a tiny matmul in each slot's sandbox and check it sees exactly the slot's devices."),
  build: z
    .union([
      z.literal(false),
      z.object({
        context: z.string().min(1).default(repoRoot),
        dockerfile: z.string().min(1).default("environments/templar/Dockerfile"),
        /** Paths (relative to context) sent to the engine; the Dockerfile may COPY only these. */
        include: z.array(z.string().min(1)).min(1).default(["environments/templar", "hparams"]),
        /** The Dockerfile's BASE build-arg, e.g. crusades-base:bookworm for a CPU image. */
        baseImage: z.string().min(1).optional(),
      }),
    ])
    .prefault({})
    .describe("Build the image when missing or built from other harness files: { context, dockerfile, include, baseImage } (BASE build-arg); false: use the image as it is."),
  ...limitOptions(),
  socketPath: z.string().min(1).optional().describe("Docker engine socket; default DOCKER_HOST or /var/run/docker.sock."),
  idleSeconds: z.number().positive().default(60).describe("A submission's container waits this long for its next run before it is removed."),
});
export type DockerExecutorOptions = z.infer<typeof DockerExecutorOptions>;

export const dockerExecutor = defineExecutor("docker", DockerExecutorOptions, (opts) => {
  const docker = new Docker(opts.socketPath ? { socketPath: opts.socketPath } : undefined);
  let ready: Promise<void> | undefined;
  let slots: SlotPool | undefined;
  // Per slot, one container per submission: its runs on that slot share the imports, never a process
  // (each run gets a fresh supervisor and worker). Keyed by submission, so a run never shares a
  // container with another submission's; the next submission's first run on the slot removes it.
  const sessions = new Map<string, SessionPool>();

  // Once per executor: a retry after a failure (engine down, build error, a slot that fails its probe) starts over.
  const prepare = (log: Logger) =>
    (ready ??= (async () => {
      await removeStale(docker, opts.validatorId, log);
      await ensureImage(docker, opts, log);
      const pool = buildSlots(opts, await localDevices());
      if (opts.probe) await probeAll(pool, (slot) => probeContainer(docker, opts, slot), log);
      for (const slot of pool) {
        sessions.set(slot.id, new SessionPool({ start: (submissionId, l, output) => startContainer(docker, opts, slot, submissionId, l, output), idleMs: opts.idleSeconds * 1000, exclusive: true }));
      }
      slots = new SlotPool(pool, { maxFailures: opts.maxSlotFailures, log, present: async (slot) => slotPresent(slot, await localDevices()) });
    })().catch((e) => {
      ready = undefined;
      throw e;
    }));

  return {
    init: (log) => prepare(log),

    async tokenShard(dataPath) {
      const host = shardSource(opts);
      const sha256 = host !== null && dataPath === servedDataPath() ? await fileSha256(host) : null;
      return sha256 ? { where: host!, sha256 } : null;
    },
    slots: () => slots?.status() ?? [],

    async evaluate(request: EvaluationRequest, ctx) {
      const log = ctx.log.child({ executor: "docker", submission: request.submission_id, run: request.run_index });
      if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
      try {
        await prepare(log);
      } catch (e) {
        return resultOf(request, { kind: "failed", message: `docker executor not ready: ${(e as Error).message}` }, null, "");
      }
      const limitMs = wallClockLimitMs(request, opts);
      const warm = (slot: Slot) => sessions.get(slot.id)!.has(request.submission_id);
      return slots!.evaluate(request, ctx, warm, async (slot) => {
        const slog = log.child({ slot: slot.id });
        const output = logStream(slog, opts.maxLogBytes);
        const { end, document } = await sessions.get(slot.id)!.evaluate(request.submission_id, request, limitMs, ctx.signal, output, slog);
        output.end();
        const result = requireWorkerDrop(request, resultOf(request, end, document, output.tail()));
        slog.info("evaluation finished", { success: result.success, tps: result.tps, error: result.error?.code ?? null });
        return result;
      });
    },

    close: async () => {
      await Promise.all([...sessions.values()].map((p) => p.close()));
    },
  };
});

/** Scratch in/out directories for a container, 0700. */
async function runDirs(log?: Logger) {
  const dir = await mkdtemp(join(tmpdir(), "crusades-docker-"));
  log?.debug("run directory", { dir });
  const inDir = join(dir, "in");
  const outDir = join(dir, "out");
  for (const d of [inDir, outDir]) {
    await mkdir(d);
    await chmod(d, MODES.dir);
  }
  return { dir, inDir, outDir };
}

const PROBE_TIMEOUT_MS = 300_000;

/** Runs the start-up probe in the slot's sandbox (the same container options as a run) and returns its output. */
async function probeContainer(docker: Docker, opts: DockerExecutorOptions, slot: Slot): Promise<string> {
  const { dir, inDir, outDir } = await runDirs();
  const run = { session: `probe-${randomBytes(8).toString("hex")}`, submissionId: "probe", command: ["python3", ...probeArgs(slot)] };
  const create = createOptions(opts, opts, sandboxSpec(opts, run, { inDir, outDir }), slot);
  let container: Docker.Container | undefined;
  try {
    container = await docker.createContainer(create);
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    let output = "";
    const sink = new Writable({
      write(chunk, _enc, done) {
        if (output.length < 1 << 16) output += chunk.toString();
        done();
      },
    });
    docker.modem.demuxStream(stream, sink, sink);
    await container.start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS / 1000}s`)), PROBE_TIMEOUT_MS)));
    await Promise.race([container.wait(), timedOut]).finally(() => clearTimeout(timer));
    // The attach stream can deliver its last bytes just after the exit.
    await new Promise((r) => setTimeout(r, 100));
    return output;
  } catch (e) {
    throw new Error(`docker: ${(e as Error).message}`);
  } finally {
    await container?.remove({ force: true, v: true }).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}


/**
 * Creates and starts the sandbox container running a warm server for one submission. Results are
 * copied out by the engine: the supervisor writes them as the container's root with mode 0600, which a
 * validator that is not root could not read from the bind mount itself.
 */
async function startContainer(docker: Docker, opts: DockerExecutorOptions, slot: Slot, submissionId: string, log: Logger, output: Output): Promise<ServerHandle> {
  const { dir, inDir, outDir } = await runDirs(log);
  const run = { session: randomBytes(12).toString("hex"), submissionId, command: serveCommand(opts.idleSeconds + SERVER_IDLE_MARGIN_SECONDS) };
  const create = createOptions(opts, opts, sandboxSpec(opts, run, { inDir, outDir, shard: shardMount(opts) }), slot);
  let container: Docker.Container | undefined;
  const remove = async () => {
    await container?.remove({ force: true, v: true }).catch((e: Error) => {
      if (!/no such container|is already in progress/i.test(e.message)) log.warn(`could not remove container ${create.name}: ${e.message}`);
    });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    container = await docker.createContainer(create);
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    const sink = (name: "stdout" | "stderr") =>
      new Writable({
        write(chunk, _enc, done) {
          output(name, chunk);
          done();
        },
      });
    docker.modem.demuxStream(stream, sink("stdout"), sink("stderr"));
    await container.start();
  } catch (e) {
    await remove();
    throw new Error(`docker: ${(e as Error).message}`);
  }
  const started = container;
  const exited = started.wait().then(
    ({ StatusCode }: { StatusCode: number }): RunEnd => ({ kind: "exited", code: StatusCode }),
    (e: Error): RunEnd => ({ kind: "failed", message: `docker: ${e.message}` }),
  );
  return { inDir, outDir, read: (name) => copyOut(started, `${CONTAINER_OUT}/${name}`), exited, kill: remove };
}

/** The token shard on this machine: `dataPath`, by default hparams `benchmark_data_path` in this checkout. */
function shardSource(opts: DockerExecutorOptions): string | null {
  const served = servedDataPath();
  if (served === null || opts.dataPath === null) return null;
  return opts.dataPath === undefined ? resolve(repoRoot, served) : resolve(opts.dataPath);
}

/** The shard's read-only mount, when the file is there (else the harness says it is missing and how to write it). */
function shardMount(opts: DockerExecutorOptions): { source: string; target: string } | null {
  const source = shardSource(opts);
  return source !== null && statSync(source, { throwIfNoEntry: false })?.isFile() ? { source, target: containerDataPath(opts, servedDataPath()!) } : null;
}

const MAX_RESULT_BYTES = 16 << 20;

/** One file out of a container, or null when it is missing or not a plain file. */
async function copyOut(container: Docker.Container, path: string): Promise<string | null> {
  let archive: NodeJS.ReadableStream;
  try {
    archive = await container.getArchive({ path });
  } catch {
    return null;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of archive as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_RESULT_BYTES + 1024) return null;
    chunks.push(chunk);
  }
  return firstTarFile(Buffer.concat(chunks))?.toString("utf8") ?? null;
}

/** The contents of a tar archive's first entry when it is a regular file (ustar: 512-byte header). */
export function firstTarFile(tar: Buffer): Buffer | null {
  if (tar.length < 512) return null;
  const type = String.fromCharCode(tar[156]!);
  if (type !== "0" && type !== "\0") return null;
  const size = parseInt(tar.subarray(124, 136).toString("ascii").replace(/\0.*$/, "").trim(), 8);
  if (!Number.isFinite(size) || 512 + size > tar.length) return null;
  return tar.subarray(512, 512 + size);
}

/** Removes containers a previous (crashed) run of this validator left behind. */
async function removeStale(docker: Docker, validatorId: string, log: Logger) {
  const stale = await docker.listContainers({ all: true, filters: { label: [`${LABEL_VALIDATOR}=${validatorId}`] } });
  for (const c of stale) {
    log.warn(`removing stale evaluation container ${c.Names[0] ?? c.Id} left by an earlier run`);
    await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => {});
  }
}

/** Image label holding the digest of the files the image was built from. */
export const LABEL_INPUTS = "crusades.build-inputs";

/**
 * sha256 over the build inputs (relative paths and bytes, sorted) and the base image name. An image whose
 * label differs was built from another harness, and evaluating with it would measure stale code.
 */
export function buildInputsDigest(b: Exclude<DockerExecutorOptions["build"], false>): string {
  const h = createHash("sha256").update(`base:${b.baseImage ?? ""}\0`);
  const files: string[] = [];
  const walk = (rel: string) => {
    const abs = join(b.context, rel);
    if (statSync(abs).isDirectory()) {
      for (const name of readdirSync(abs)) if (name !== "__pycache__" && !name.endsWith(".pyc")) walk(join(rel, name));
    } else files.push(rel);
  };
  for (const rel of [b.dockerfile, ...b.include]) walk(rel);
  for (const rel of files.sort()) h.update(`${rel}\0`).update(readFileSync(join(b.context, rel))).update("\0");
  return h.digest("hex");
}

async function ensureImage(docker: Docker, opts: DockerExecutorOptions, log: Logger) {
  const labels = await docker.getImage(opts.image).inspect().then(
    (info) => info.Config?.Labels ?? {},
    (e: { statusCode?: number }) => {
      if (e.statusCode === 404) return null;
      throw e;
    },
  );
  if (opts.build === false) {
    if (labels === null) throw new Error(`image ${opts.image} not found and building is disabled; build it from environments/templar/Dockerfile first`);
    return;
  }
  const b = opts.build;
  const digest = buildInputsDigest(b);
  if (labels?.[LABEL_INPUTS] === digest) return;
  log.info(
    labels === null
      ? `building ${opts.image} from ${b.dockerfile}${b.baseImage ? ` on ${b.baseImage}` : ""}`
      : `rebuilding ${opts.image}: it was built from other harness files than this checkout's`,
  );
  const stream = await docker.buildImage(
    { context: b.context, src: [b.dockerfile, ...b.include] },
    { t: opts.image, dockerfile: b.dockerfile, buildargs: b.baseImage ? { BASE: b.baseImage } : {}, labels: { [LABEL_INPUTS]: digest }, rm: true, forcerm: true },
  );
  const events = await new Promise<{ error?: string; stream?: string }[]>((resolve, reject) =>
    docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => (err ? reject(err) : resolve(out)), (ev: { stream?: string }) => {
      const line = ev.stream?.trimEnd();
      if (line) log.debug(line);
    }),
  );
  const failed = events.find((e) => e.error);
  if (failed) throw new Error(`building ${opts.image} failed: ${failed.error}`);
  log.info(`built ${opts.image}`);
}
