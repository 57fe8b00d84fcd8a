// Renders the README's reference tables from the zod schemas (hparams, validator config, every plugin's
// options), between `<!-- generated:NAME -->` markers. `--check` exits 1 when the README has drifted.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { ConfigSchema } from "../core/config.ts";
import { HParams, loadHParams, repoRoot } from "../core/hparams.ts";
import { registry } from "../plugins/index.ts";

export const readmePath = fileURLToPath(new URL("../README.md", import.meta.url));

type JsonSchema = { type?: string | string[]; description?: string; default?: unknown; enum?: unknown[]; const?: unknown; anyOf?: JsonSchema[]; items?: JsonSchema; properties?: Record<string, JsonSchema>; required?: string[] };

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
// Defaults computed from this checkout's location would make the README differ per machine.
const code = (v: unknown) => "`" + cell(JSON.stringify(v).replaceAll(JSON.stringify(repoRoot).slice(1, -1), "<repo>/")) + "`";

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((e) => JSON.stringify(e)).join(" \\| ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return s.anyOf.map(typeOf).join(" \\| ");
  if (s.type === "array") return `${s.items ? typeOf(s.items) : "any"}[]`;
  if (Array.isArray(s.type)) return s.type.join(" \\| ");
  return s.type ?? "plugin";
}

function optionsTable(schema: z.ZodType): string {
  let json: JsonSchema;
  try {
    json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchema;
  } catch {
    return "_(options not representable as JSON Schema)_\n";
  }
  const props = Object.entries(json.properties ?? {});
  if (!props.length) return "_no options_\n";
  const rows = props.map(([k, p]) => `| \`${k}\` | ${typeOf(p)} | ${json.required?.includes(k) && p.default === undefined ? "**required**" : p.default !== undefined ? code(p.default) : ""} | ${cell(p.description ?? "")} |`);
  return ["| option | type | default | meaning |", "|---|---|---|---|", ...rows].join("\n") + "\n";
}

export function hparamsTable(): string {
  const values = loadHParams() as Record<string, unknown>;
  const rows = Object.entries(HParams.shape).map(([k, s]) => `| \`${k}\` | ${code(values[k])} | ${cell((s as z.ZodType).description ?? "")} |`);
  return ["| key | value | meaning |", "|---|---|---|", ...rows].join("\n") + "\n";
}

export function configReference(): string {
  const out = ["### `defineConfig({...})`\n", optionsTable(ConfigSchema)];
  for (const kind of ["source", "executor", "sink"] as const) {
    for (const [name, factory] of Object.entries(registry[kind])) {
      out.push(`### ${kind} \`${name}\`\n`, optionsTable((factory as unknown as { schema: z.ZodType }).schema));
    }
  }
  return out.join("\n");
}

const sections: Record<string, () => string> = { hparams: hparamsTable, config: configReference };

export function renderReadme(text: string): string {
  let out = text;
  for (const [name, render] of Object.entries(sections)) {
    const re = new RegExp(`(<!-- generated:${name} -->\\n)[\\s\\S]*?(<!-- /generated:${name} -->)`);
    if (!re.test(out)) throw new Error(`README.md lacks the <!-- generated:${name} --> … <!-- /generated:${name} --> markers`);
    out = out.replace(re, (_, open: string, close: string) => `${open}${render()}${close}`);
  }
  return out;
}

if (import.meta.main) {
  const current = readFileSync(readmePath, "utf8");
  const next = renderReadme(current);
  if (process.argv.includes("--check")) {
    if (next !== current) {
      console.error("README.md reference tables are stale — run: bun scripts/docs.ts");
      process.exit(1);
    }
    console.log("README.md reference tables are up to date");
  } else {
    writeFileSync(readmePath, next);
    console.log("README.md reference tables regenerated");
  }
}
