// A validator for a laptop: the localnet (bun scripts/localnet.ts), the tiny CPU profile, and the process
// executor, which runs submitted code with NO sandbox. Only for code you trust (your own, the demo's).
//   bun scripts/localnet.ts &
//   CRUSADES_HOTKEY_URI=//Charlie bun scripts/validator.ts --config local_test/crusades.local.config.ts
// //Charlie is the localnet's validator hotkey (uid 2); //Bob is the burn uid, //Miner1… are miners.
import { defineConfig } from "../core/config.ts";
import { processExecutor } from "../plugins/executors/process.ts";
import { chainWeights } from "../plugins/sinks/chain-weights.ts";
import { chainReveals } from "../plugins/sources/chain-reveals.ts";

export default defineConfig({
  network: "local",
  database: "data/local.db",
  profile: "tiny",
  // The README's practice commit: --reveal-blocks 3 --block-time 1 on the localnet's one-second blocks.
  sources: [chainReveals({ revealBlocks: 3, blockTime: 1 })],
  executor: processExecutor({ unsafe: true }),
  sinks: [chainWeights()],
  // The demo serves miners' code from 127.0.0.1, which production validators refuse.
  allowLoopbackCode: true,
  pollIntervalSeconds: 2,
});
