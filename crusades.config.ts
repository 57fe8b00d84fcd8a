// The validator's configuration: which plugins run, with which options. Start it with
//   bun scripts/validator.ts --config crusades.config.ts
// Every field is checked at start; a mistake prints one line naming the field and exits 2.
// Competition parameters (runs per submission, reveal delay, weights interval, burn share…) are not
// here: they live in hparams/hparams.json, the same file miners and the evaluation harness read.
import { defineConfig } from "./core/config.ts";
import { chainReveals } from "./plugins/sources/chain-reveals.ts";
import { chainWeights } from "./plugins/sinks/chain-weights.ts";
import { restSink } from "./plugins/sinks/rest.ts";

export default defineConfig({
  // finney (main), test, local, or any ws(s):// URL of a subtensor node you run.
  network: "finney",
  // The subnet; defaults to hparams.json `netuid`.
  // netuid: 3,

  // The validator's hotkey: ~/.bittensor/wallets/<name>/hotkeys/<hotkey>, unencrypted (it signs weights
  // without a prompt). $CRUSADES_HOTKEY_URI (a mnemonic) takes precedence, e.g. from a secrets manager.
  wallet: { name: "validator", hotkey: "default" },

  // Everything the validator knows (submissions, pinned code, runs, scores, the sink outbox) is in this
  // SQLite file. The API (scripts/api.ts) reads the same file. Back it up; never share it between two
  // running validators.
  database: "data/crusades.db",

  // `benchmark` is the real measurement on GPUs; `tiny` is a CPU-sized model for demos and tests.
  profile: "benchmark",

  // Where submissions come from: the miners' timelocked commitments, once the chain reveals them.
  // The rules (first committer wins, one submission per hotkey per min_blocks_between_commits…) are in
  // plugins/sources/chain-reveals.ts. For a tournament without a chain, use the gists source instead:
  //   { use: "gists", options: { users: ["alice", "bob"], tokenEnv: "GITHUB_TOKEN" } }
  sources: [chainReveals()],

  // Where submitted code runs: a Docker container on this machine's GPUs, with no network, a read-only
  // root, dropped capabilities and resource limits (plugins/executors/docker.ts). gpus: "all" makes one
  // slot per GPU that nvidia-smi -L lists: each evaluation holds one slot and its container sees only
  // that GPU, so 8 GPUs run 8 evaluations at once that never share a device. Name the slots yourself
  // with slots: [{ gpus: ["0"], cpus: "0-15" }, …]. To evaluate on remote GPU hosts instead, use
  // { use: "ssh", options: { hosts: [{ host: "gpu-1" }, { host: "gpu-2" }], user, privateKeyPath } }
  // (plugins/executors/ssh.ts).
  executor: { use: "docker", options: { image: "crusades-eval:latest", gpus: "all" } },

  // Evaluations at once: by default one per slot of the executor's pool. A lower number leaves slots
  // unused; a higher one is refused at start (two runs would share a device).
  // concurrency: 4,

  // Where decisions go. chain-weights sets weights every set_weights_interval_blocks (winner takes all,
  // burn share from hparams). The REST sink is optional: it POSTs every score and weights event, signed
  // with HMAC-SHA256, to your own services; remove it if you have none.
  sinks: [
    chainWeights(),
    restSink({ urls: ["https://hooks.example.org/crusades"], secretEnv: "CRUSADES_WEBHOOK_SECRET" }),
  ],

  // Seconds between source polls and weight checks (a divisor of 60; one block is 12 s).
  pollIntervalSeconds: 12,
});
