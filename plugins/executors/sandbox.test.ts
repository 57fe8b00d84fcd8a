import { describe, expect, test } from "bun:test";
import { failedResult } from "../../core/contracts.ts";
import { tinyRequest } from "../../tests/executors/helpers.ts";
import { bytes, containerDataPath, createOptions, dockerRunArgs, requireWorkerDrop, SandboxOptions, sandboxSpec, serveCommand } from "./sandbox.ts";

const limits = { memory: "8g", shmSize: "2g", pidsLimit: 256 };
const request = tinyRequest("def inner_steps(*a):\n    pass\n");
const dirs = { inDir: "/host/run/in", outDir: "/host/run/out" };
const run = { session: "s1", submissionId: request.submission_id, command: serveCommand(120) };
const cpuSlot = { gpus: null, cpus: null };

describe("sandbox policy", () => {
  test("the container is locked down: no network, read-only root, capabilities limited, limits set", () => {
    const opts = SandboxOptions.parse({});
    const c = createOptions(opts, limits, sandboxSpec(opts, run, dirs), cpuSlot);
    const h = c.HostConfig!;
    expect(h.NetworkMode).toBe("none");
    expect(c.NetworkDisabled).toBe(true);
    expect(h.ReadonlyRootfs).toBe(true);
    expect(h.CapDrop).toEqual(["ALL"]);
    expect(h.CapAdd!.sort()).toEqual(["CHOWN", "DAC_OVERRIDE", "KILL", "SETGID", "SETUID"]);
    expect(h.SecurityOpt).toContain("no-new-privileges");
    expect(h.PidsLimit).toBe(256);
    expect(h.Memory).toBe(8 * 1024 ** 3);
    expect(h.ShmSize).toBe(2 * 1024 ** 3);
    expect(h.Binds).toEqual(["/host/run/in:/run/crusades/in:ro", "/host/run/out:/run/crusades/out:rw"]);
    expect(Object.keys(h.Tmpfs!)).toEqual(["/tmp", "/dev/shm"]);
    expect(h.Tmpfs!["/tmp"]).toContain("nosuid");
    expect(h.DeviceRequests).toEqual([]);
    expect(c.Labels).toMatchObject({ "crusades.session": "s1", "crusades.submission": request.submission_id });
    expect([...(c.Entrypoint as string[]), ...c.Cmd!]).toEqual(["python3", "environments/templar/env.py", "--serve", "/run/crusades/in", "--results", "/run/crusades/out", "--idle-seconds", "120"]);
  });

  test("a slot's GPUs are requested by device request naming only them, its cores as the cpuset", () => {
    const opts = SandboxOptions.parse({});
    const gpu = createOptions(opts, limits, sandboxSpec(opts, run, dirs), { gpus: ["0", "3"], cpus: "8-15" }).HostConfig!;
    expect(gpu.DeviceRequests).toEqual([{ Driver: "", Count: 0, DeviceIDs: ["0", "3"], Capabilities: [["gpu"]], Options: {} }]);
    expect(gpu.CpusetCpus).toBe("8-15");
    expect(createOptions(opts, limits, sandboxSpec(opts, run, dirs), cpuSlot).HostConfig!.CpusetCpus).toBeUndefined();
  });

  test("the slot's worker uid reaches the harness in both renderings", () => {
    const opts = SandboxOptions.parse({});
    const slot = { gpus: null, cpus: "1", workerUid: 65532 };
    expect(createOptions(opts, limits, sandboxSpec(opts, run, dirs), slot).Env).toContain("CRUSADES_WORKER_UID=65532");
    const args = dockerRunArgs(opts, limits, sandboxSpec(opts, run, dirs), slot);
    expect(args[args.indexOf("CRUSADES_WORKER_UID=65532") - 1]).toBe("-e");
    expect(createOptions(opts, limits, sandboxSpec(opts, run, dirs), cpuSlot).Env!.some((e) => e.startsWith("CRUSADES_WORKER_UID="))).toBe(false);
  });

  test("`docker run` arguments carry the same policy", () => {
    const opts = SandboxOptions.parse({ image: "crusades-eval:cuda" });
    const args = dockerRunArgs(opts, limits, sandboxSpec(opts, { ...run, session: request.task_id, command: serveCommand(120) }, dirs), { gpus: ["1"], cpus: "2,3" }).join(" ");
    for (const flag of ["--network none", "--read-only", "--cap-drop ALL", "--cap-add SETUID", "--security-opt no-new-privileges", "--pids-limit 256",
      "--memory 8g", "--shm-size 2g", "--user 0:0", '--gpus "device=1"', "--cpuset-cpus 2,3", "-v /host/run/in:/run/crusades/in:ro", `--label crusades.session=${request.task_id}`]) {
      expect(args).toContain(flag);
    }
    expect(args).toMatch(/--entrypoint python3 crusades-eval:cuda environments\/templar\/env\.py --serve \/run\/crusades\/in --results \/run\/crusades\/out --idle-seconds 120/);
  });

  test("the token shard is a read-only mount where the harness reads it, in both renderings; none without one", () => {
    const opts = SandboxOptions.parse({});
    expect(containerDataPath(opts, "/mnt/tokens.npy")).toBe("/mnt/tokens.npy");
    // docker parses --mount as CSV: a path with a comma or a quote stays one field.
    const shard = { source: '/data/a,b "x".npy', target: containerDataPath(opts, "data/benchmark/tokens.npy") };
    expect(shard.target).toBe("/app/data/benchmark/tokens.npy");
    const spec = sandboxSpec(opts, run, { ...dirs, shard });
    expect(createOptions(opts, limits, spec, cpuSlot).HostConfig!.Mounts).toEqual([{ Type: "bind", Source: shard.source, Target: shard.target, ReadOnly: true }]);
    const args = dockerRunArgs(opts, limits, spec, cpuSlot);
    expect(args[args.indexOf("--mount") + 1]).toBe('type=bind,"src=/data/a,b ""x"".npy","dst=/app/data/benchmark/tokens.npy",readonly');
    expect(createOptions(opts, limits, sandboxSpec(opts, run, dirs), cpuSlot).HostConfig!.Mounts).toEqual([]);
    expect(dockerRunArgs(opts, limits, sandboxSpec(opts, run, dirs), cpuSlot)).not.toContain("--mount");
  });

  test("what a worker can park outside its processes stays within half the memory; SysV cannot hold any", () => {
    const opts = SandboxOptions.parse({});
    const h = createOptions(opts, limits, sandboxSpec(opts, run, dirs), cpuSlot).HostConfig!;
    // memory 8g, /dev/shm 2g: /tmp gets 4g - 2g, below tmpfsSize's 4g.
    expect(h.Tmpfs!["/tmp"]).toContain(`size=${2 * 1024 ** 3}`);
    expect(h.Tmpfs!["/tmp"]).toMatch(/nr_inodes=\d+/);
    expect(h.Tmpfs!["/dev/shm"]).toMatch(new RegExp(`nr_inodes=\\d+.*size=${2 * 1024 ** 3}`));
    expect(h.Sysctls).toEqual({ "kernel.shm_rmid_forced": "1", "kernel.msgmni": "32" });
    const small = SandboxOptions.parse({ tmpfsSize: "512m" });
    expect(createOptions(small, limits, sandboxSpec(small, run, dirs), cpuSlot).HostConfig!.Tmpfs!["/tmp"]).toContain(`size=${512 * 1024 ** 2}`);
    const args = dockerRunArgs(opts, limits, sandboxSpec(opts, run, dirs), cpuSlot).join(" ");
    expect(args).toContain("--sysctl kernel.shm_rmid_forced=1");
    expect(args).toContain(`size=${2 * 1024 ** 3}`);
    expect(() => createOptions(opts, { ...limits, shmSize: "4g" }, sandboxSpec(opts, run, dirs), cpuSlot)).toThrow(/twice shmSize/);
  });

  test("sizes parse like docker's", () => {
    expect(bytes("512")).toBe(512);
    expect(bytes("4k")).toBe(4096);
    expect(bytes("16G")).toBe(16 * 1024 ** 3);
    expect(() => bytes("lots")).toThrow();
  });

  test("a result produced with the submission running as uid 0 is not trusted", () => {
    const ok = { ...failedResult(request, "crash", "x"), diagnostics: { worker_uid: 65534 } };
    expect(requireWorkerDrop(request, ok)).toBe(ok);
    const root = { ...ok, diagnostics: { worker_uid: 0 } };
    expect(requireWorkerDrop(request, root).error?.code).toBe("executor_error");
  });
});
