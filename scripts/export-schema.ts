// Writes the evaluation documents' JSON Schemas for the Python harness. `--check` exits 1 when the
// committed files differ from what core/contracts.ts defines (CI runs the check through the tests).
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { jsonSchemas } from "../core/contracts.ts";

export const schemaDir = fileURLToPath(new URL("../environments/templar/schema/", import.meta.url));

export function renderedSchemas(): [string, string][] {
  return Object.entries(jsonSchemas()).map(([file, schema]) => [file, JSON.stringify(schema, null, 2) + "\n"]);
}

export function staleSchemas(): string[] {
  return renderedSchemas()
    .filter(([file, text]) => {
      try {
        return readFileSync(schemaDir + file, "utf8") !== text;
      } catch {
        return true;
      }
    })
    .map(([file]) => file);
}

if (import.meta.main) {
  if (process.argv.includes("--check")) {
    const stale = staleSchemas();
    if (stale.length) {
      console.error(`stale schema files: ${stale.join(", ")} — run: bun scripts/export-schema.ts`);
      process.exit(1);
    }
    console.log("schemas are up to date");
  } else {
    for (const [file, text] of renderedSchemas()) writeFileSync(schemaDir + file, text);
    console.log(`wrote ${renderedSchemas().length} schema files to ${schemaDir}`);
  }
}
