// What the demo needs before it starts anything: a Python that imports the evaluation environment's
// packages, and a free port for the dashboard (or a fallback when the asked one is taken).
import { spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { UserError } from "../../core/errors.ts";

const PROBE = "import sys, torch, transformers, numpy; print(sys.version.split()[0], torch.__version__, transformers.__version__)";

/** Returns "python 3.x, torch …, transformers …" or throws a UserError telling the user what to run. */
export function checkPython(python: string): string {
  const r = spawnSync(python, ["-c", PROBE], { encoding: "utf8" });
  if (r.error) {
    throw new UserError(`${python} was not found (${r.error.message}): install Python 3.11+, then run \`npm run setup\``, "missing_python");
  }
  if (r.status !== 0) {
    const why = (r.stderr || r.stdout).trim().split("\n").pop() ?? `exit ${r.status}`;
    throw new UserError(`${python} cannot import the evaluation packages (${why}): run \`npm run setup\` to install them`, "missing_python");
  }
  const [py, torch, transformers] = r.stdout.trim().split(/\s+/);
  return `python ${py}, torch ${torch}, transformers ${transformers}`;
}

/** True when nothing listens on 127.0.0.1:port now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}
