// Hosts the demo miners' train.py files on loopback, as a gist would: GET /<name>/train.py returns the
// file's bytes as text/plain. Files are read on every request, so editing one and re-submitting works.
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";

export interface CodeHost {
  /** name → the URL its file is served at. */
  urls: Record<string, string>;
  close(): Promise<void>;
}

export async function hostFiles(files: Record<string, string>): Promise<CodeHost> {
  const server: Server = createServer(async (req, res) => {
    const name = /^\/([\w-]+)\/train\.py$/.exec(req.url ?? "")?.[1];
    const path = name !== undefined && Object.hasOwn(files, name) ? files[name] : undefined;
    if (req.method !== "GET" || !path) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    try {
      const body = await readFile(path);
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8", "content-length": body.length }).end(body);
    } catch (e) {
      res.writeHead(500, { "content-type": "text/plain" }).end(`cannot read ${path}: ${(e as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as { port: number };
  const urls = Object.fromEntries(Object.keys(files).map((name) => [name, `http://127.0.0.1:${port}/${name}/train.py`]));
  return {
    urls,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
