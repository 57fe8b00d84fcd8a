// What the demo needs before it starts anything: a Python that imports the evaluation environment's
// packages, and a free port for the dashboard (or a fallback when the asked one is taken).
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { UserError } from "../../core/errors.ts";

const PROBE = "import sys, torch, transformers, numpy; print(sys.version.split()[0], torch.__version__, transformers.__version__)";

/** Returns "python 3.x, torch …, transformers …" or throws a UserError telling the user what to run. */
export function checkPython(python: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(python, ["-c", PROBE], { encoding: "utf8" }, (error, stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") {
        return reject(new UserError(`${python} was not found: install Python 3.11+, then run \`npm run setup\``, "missing_python"));
      }
      if (error) {
        const why = (stderr || stdout || error.message).trim().split("\n").pop();
        return reject(new UserError(`${python} cannot import the evaluation packages (${why}): run \`npm run setup\` to install them`, "missing_python"));
      }
      const [py, torch, transformers] = stdout.trim().split(/\s+/);
      resolve(`python ${py}, torch ${torch}, transformers ${transformers}`);
    });
  });
}

/** True when nothing listens on 127.0.0.1:port now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}
