// Every plugin by the name a config refers to it with (`{ use: "chain-reveals", options: {...} }`), for
// loadConfig. A new plugin is one import and one line here.
import type { PluginRegistry } from "../core/config.ts";
import { dockerExecutor } from "./executors/docker.ts";
import { processExecutor } from "./executors/process.ts";
import { sshExecutor } from "./executors/ssh.ts";
import { restSink } from "./sinks/rest.ts";
import { chainWeights } from "./sinks/chain-weights.ts";
import { chainReveals } from "./sources/chain-reveals.ts";
import { gistsSource } from "./sources/gists.ts";

export const registry: PluginRegistry = {
  source: { "chain-reveals": chainReveals, gists: gistsSource },
  executor: { docker: dockerExecutor, ssh: sshExecutor, process: processExecutor },
  sink: { "chain-weights": chainWeights, rest: restSink },
};
