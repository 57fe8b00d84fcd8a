#!/usr/bin/env bun
// Starts the localnet (a subtensor stand-in for tests and the demo) and prints its URL and dev accounts.
import { parseArgs } from "node:util";
import { UserError } from "../core/errors.ts";
import { startLocalnet, type DevAccount } from "../local_test/localnet/localnet.ts";
import { DEV_PHRASE } from "../local_test/localnet/genesis.ts";
import { METADATA } from "../local_test/localnet/runtime.ts";

const HELP = `usage: localnet.ts [options]

A local subtensor stand-in: JSON-RPC over WebSocket that @polkadot/api connects to unchanged, serving
real subtensor metadata, with one subnet (owner, burn uid 1, a validator, miners) and a local drand
beacon that reveals timelocked commitments on quicknet's schedule.

Options:
  --port N              port on 127.0.0.1 (default 9944; 0 picks a free one)
  --host ADDR           listen address (default 127.0.0.1)
  --block-ms N          milliseconds between blocks (default 1000)
  --netuid N            the subnet (default 3)
  --miners N            registered miner hotkeys (default 3)
  --tempo N             subnet tempo in blocks (default 10)
  --rate-limit N        WeightsSetRateLimit in blocks (default 20)
  --commit-reveal       enable commit-reveal weights on the subnet
  --spec 381|346        which real runtime metadata to serve (default 381)
  --state FILE          keep the chain in this SQLite file and continue it on restart
  --json                print the accounts as one JSON line instead of a table
  --help                this text`;

function int(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UserError(`--${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: "string" },
        host: { type: "string" },
        "block-ms": { type: "string" },
        netuid: { type: "string" },
        miners: { type: "string" },
        tempo: { type: "string" },
        "rate-limit": { type: "string" },
        "commit-reveal": { type: "boolean" },
        spec: { type: "string" },
        state: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean" },
      },
      strict: true,
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  let options;
  try {
    const spec = values.spec ?? "381";
    if (spec !== "381" && spec !== "346") throw new UserError(`--spec must be 381 or 346, got ${JSON.stringify(spec)}`);
    options = {
      port: int("port", values.port, 9944),
      hostname: values.host ?? "127.0.0.1",
      blockMs: int("block-ms", values["block-ms"], 1000),
      netuid: int("netuid", values.netuid, 3),
      miners: int("miners", values.miners, 3),
      tempo: int("tempo", values.tempo, 10),
      weightsRateLimit: int("rate-limit", values["rate-limit"], 20),
      commitReveal: values["commit-reveal"] ?? false,
      metadataPath: METADATA[`spec${spec}` as keyof typeof METADATA],
      statePath: values.state,
    };
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  const net = await startLocalnet(options);
  // performance.now() counts from process start, so this includes loading the modules.
  const ms = Math.round(performance.now());
  const { owner, burn, validator, miners, others } = net.accounts;
  if (values.json) {
    console.log(JSON.stringify({ url: net.url, genesisHash: net.genesisHash, netuid: net.netuid, beacon: net.beacon, accounts: net.accounts, startMs: ms }));
  } else {
    const row = (role: string, a: DevAccount) => `  ${role.padEnd(10)} ${String(a.uid ?? "-").padStart(3)}  ${a.uri.padEnd(10)} ${a.ss58}`;
    console.log(
      [
        `localnet ready at ${net.url} in ${ms} ms (spec ${net.chain.runtime.version.specVersion}, netuid ${net.netuid}, genesis ${net.genesisHash})`,
        `  role       uid  uri        ss58 (mnemonic: "${DEV_PHRASE}" + uri)`,
        row("owner", owner),
        row("burn", burn),
        row("validator", validator),
        ...miners.map((m, i) => row(`miner${i + 1}`, m)),
        ...others.map((o) => row("funded", o)),
        `  drand beacon public key ${net.beacon.publicKey}`,
      ].join("\n"),
    );
  }
  const stop = async () => {
    await net.stop();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error) => {
    console.error(error instanceof UserError ? `error: ${error.message}` : error);
    process.exit(1);
  },
);
