// Runs each evaluation in a fresh, locked-down container on the validator's own Docker engine
// (the GPUs on this machine). The isolation policy itself lives in sandbox.ts.
import Docker from "dockerode";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { z } from "zod";
import type { EvaluationRequest } from "../../core/contracts.ts";
import { repoRoot } from "../../core/hparams.ts";
import type { Logger } from "../../core/log.ts";
import { defineExecutor } from "../../core/plugin.ts";
import { limitOptions, REQUEST_FILE, RESULT_FILE, resultOf, wallClockLimitMs, type RunEnd } from "./harness.ts";
import { logStream, type LogStream } from "./log-stream.ts";
import { CONTAINER_OUT, createOptions, LABEL_VALIDATOR, MODES, requireWorkerDrop, SandboxOptions, sandboxSpec } from "./sandbox.ts";

export const DockerExecutorOptions = SandboxOptions.extend({
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
});
export type DockerExecutorOptions = z.infer<typeof DockerExecutorOptions>;

export const dockerExecutor = defineExecutor("docker", DockerExecutorOptions, (opts) => {
  const docker = new Docker(opts.socketPath ? { socketPath: opts.socketPath } : undefined);
  let ready: Promise<void> | undefined;

  // Once per executor: a retry after a failure (engine down, build error) starts over.
  const prepare = (log: Logger) =>
    (ready ??= (async () => {
      await removeStale(docker, opts.validatorId, log);
      await ensureImage(docker, opts, log);
    })().catch((e) => {
      ready = undefined;
      throw e;
    }));

  return {
    init: (log) => prepare(log),

    async evaluate(request: EvaluationRequest, ctx) {
      const log = ctx.log.child({ executor: "docker", submission: request.submission_id, run: request.run_index });
      if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
      try {
        await prepare(log);
      } catch (e) {
        return resultOf(request, { kind: "failed", message: `docker executor not ready: ${(e as Error).message}` }, null, "");
      }
      const dir = await mkdtemp(join(tmpdir(), "crusades-docker-"));
      log.debug("run directory", { dir });
      const output = logStream(log, opts.maxLogBytes);
      try {
        const inDir = join(dir, "in");
        const outDir = join(dir, "out");
        await mkdir(inDir);
        await mkdir(outDir);
        await writeFile(join(inDir, REQUEST_FILE), JSON.stringify(request), { mode: MODES.request });
        await chmod(inDir, MODES.dir);
        await chmod(outDir, MODES.dir);
        const spec = sandboxSpec(opts, request, { inDir, outDir });
        const { end, document } = await runContainer(docker, createOptions(opts, opts, spec), wallClockLimitMs(request, opts), ctx.signal, output, log);
        output.end();
        const result = requireWorkerDrop(request, resultOf(request, end, document, output.tail()));
        log.info("evaluation finished", { success: result.success, tps: result.tps, error: result.error?.code ?? null });
        return result;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
});

/**
 * Creates, runs and always removes one container; the whole run is bounded by limitMs. The result is
 * copied out of the stopped container by the engine: the supervisor wrote it as the container's root
 * with mode 0600, which a validator that is not root could not read from the bind mount itself.
 */
async function runContainer(
  docker: Docker,
  create: Docker.ContainerCreateOptions,
  limitMs: number,
  signal: AbortSignal,
  output: LogStream,
  log: Logger,
): Promise<{ end: RunEnd; document: string | null }> {
  let container: Docker.Container | undefined;
  let stopped: RunEnd | undefined;
  const stop = (why: RunEnd) => {
    stopped ??= why;
    container?.kill().catch(() => {}); // already exited: nothing to kill
  };
  const timer = setTimeout(() => stop({ kind: "timeout", limitMs }), limitMs);
  const onAbort = () => stop({ kind: "cancelled" });
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    container = await docker.createContainer(create);
    const stream = await container.attach({ stream: true, stdout: true, stderr: true });
    const streamEnded = new Promise<void>((r) => {
      stream.on("end", r);
      stream.on("close", r);
      stream.on("error", () => r());
    });
    const sink = (name: "stdout" | "stderr") =>
      new Writable({
        write(chunk, _enc, done) {
          output.write(name, chunk);
          done();
        },
      });
    docker.modem.demuxStream(stream, sink("stdout"), sink("stderr"));
    if (stopped) return { end: stopped, document: null };
    await container.start();
    if (stopped) await container.kill().catch(() => {});
    const { StatusCode } = await container.wait();
    // Output still in flight after exit; a container that is gone cannot keep it open for long.
    await Promise.race([streamEnded, new Promise((r) => setTimeout(r, 2000))]);
    if (stopped) return { end: stopped, document: null };
    return { end: { kind: "exited", code: StatusCode }, document: await copyOut(container, `${CONTAINER_OUT}/${RESULT_FILE}`) };
  } catch (e) {
    return { end: stopped ?? { kind: "failed", message: `docker: ${(e as Error).message}` }, document: null };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
    if (container) {
      await container.remove({ force: true, v: true }).catch((e: Error) => {
        if (!/no such container|is already in progress/i.test(e.message)) log.warn(`could not remove container ${create.name}: ${e.message}`);
      });
    }
  }
}

const MAX_RESULT_BYTES = 16 << 20;

/** One file out of a stopped container, or null when it is missing or not a plain file. */
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
