import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { failedResult } from "./contracts.ts";
import { loadConfig, resolveConfig, type PluginRegistry } from "./config.ts";
import { defineExecutor, defineSink, defineSource } from "./plugin.ts";

const fixedSource = defineSource("fixed", z.object({ ids: z.array(z.string()).default([]) }).strict(), () => ({ poll: async () => [] }));
const dockerLike = defineExecutor("docker", z.object({ gpus: z.enum(["all", "none"]).default("all"), timeoutSeconds: z.number().positive().optional() }).strict(), () => ({
  evaluate: async (r) => failedResult(r, "executor_error", "test"),
}));
const logSink = defineSink("log", z.object({}).strict(), () => ({ deliver: async () => {} }));
const registry: PluginRegistry = { source: { fixed: fixedSource }, executor: { docker: dockerLike }, sink: { log: logSink } };

const dir = mkdtempSync(join(tmpdir(), "crusades-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const message = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected a config error");
};

describe("resolveConfig", () => {
  test("plugin objects and named references both resolve, with defaults filled in", () => {
    const c = resolveConfig({ sources: [fixedSource()], executor: { use: "docker", options: { gpus: "none" } }, sinks: [{ use: "log" }] }, registry);
    expect(c.sources[0]!.name).toBe("fixed");
    expect(c.executor.options).toEqual({ gpus: "none" });
    expect(c.sinks.map((s) => s.name)).toEqual(["log"]);
    expect(c).toMatchObject({ network: "finney", profile: "benchmark", database: "data/crusades.db" });
    expect(c.concurrency).toBeUndefined();
  });

  test("an unknown plugin names the field and the known plugins", () => {
    expect(message(() => resolveConfig({ sources: [fixedSource()], executor: { use: "dockr" } }, registry))).toBe('executor.use: unknown executor "dockr" (known: docker)');
  });

  test("a wrong option type names the option path", () => {
    const m = message(() => resolveConfig({ sources: [fixedSource()], executor: { use: "docker", options: { gpus: 3 } } }, registry));
    expect(m).toStartWith('executor: executor "docker": options.gpus:');
  });

  test("a missing field is named", () => {
    expect(message(() => resolveConfig({ sources: [fixedSource()] }, registry))).toStartWith("executor:");
  });

  test("a source where an executor belongs is refused", () => {
    expect(message(() => resolveConfig({ sources: [fixedSource()], executor: fixedSource() }, registry))).toContain("executor: expected an executor plugin built by its factory");
  });

  test("a wrong scalar type is named", () => {
    expect(message(() => resolveConfig({ sources: [fixedSource()], executor: dockerLike(), concurrency: "two" }, registry))).toStartWith("concurrency:");
  });

  test("unknown top-level keys are refused", () => {
    expect(message(() => resolveConfig({ sources: [fixedSource()], executor: dockerLike(), sinkz: [] }, registry))).toContain("sinkz");
  });

  test("duplicate sink names are refused", () => {
    expect(message(() => resolveConfig({ sources: [fixedSource()], executor: dockerLike(), sinks: [logSink(), logSink()] }, registry))).toContain("sinks.1");
  });
});

describe("loadConfig", () => {
  test("a JSON config loads", async () => {
    const p = join(dir, "ok.json");
    writeFileSync(p, JSON.stringify({ network: "local", sources: [{ use: "fixed" }], executor: { use: "docker" } }));
    expect((await loadConfig(p, registry)).network).toBe("local");
  });

  test("broken JSON is one clear message", async () => {
    const p = join(dir, "bad.json");
    writeFileSync(p, "{ nope");
    expect(loadConfig(p, registry)).rejects.toThrow(/bad\.json: not valid JSON/);
  });

  test("a TS config whose factory gets a bad option fails at load, naming the option", async () => {
    const p = join(dir, "bad.config.ts");
    const configUrl = new URL("./config.test.ts", import.meta.url).pathname;
    writeFileSync(
      p,
      `import { z } from ${JSON.stringify(import.meta.resolve("zod"))}; import { defineExecutor } from ${JSON.stringify(configUrl.replace("config.test.ts", "plugin.ts"))};
       const d = defineExecutor("docker", z.object({ memory: z.string() }).strict(), () => ({ evaluate: async () => { throw 0; } }));
       export default { sources: [], executor: d({ memory: 12 }) };`,
    );
    expect(loadConfig(p, registry)).rejects.toThrow(/bad\.config\.ts: executor "docker": options\.memory:/);
  });

  test("a missing file is reported as such", async () => {
    expect(loadConfig(join(dir, "none.ts"), registry)).rejects.toThrow("config file not found");
  });
});
