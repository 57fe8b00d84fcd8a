// Where each named network lives. The URLs are the public entry points the bittensor SDK defaults to.
import { UserError } from "../errors.ts";

export const NETWORKS = {
  finney: "wss://entrypoint-finney.opentensor.ai:443",
  test: "wss://test.finney.opentensor.ai:443",
  local: "ws://127.0.0.1:9944",
} as const;

export type NetworkName = keyof typeof NETWORKS;

/** A network name or a ws(s):// URL → the websocket URL to dial. */
export function resolveEndpoint(network: string): string {
  if (network in NETWORKS) return NETWORKS[network as NetworkName];
  let url: URL;
  try {
    url = new URL(network);
  } catch {
    throw new UserError(`unknown network ${JSON.stringify(network)}: use finney, test, local or a ws(s):// URL`, "usage");
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new UserError(`network URL must be ws:// or wss://, got ${url.protocol}//`, "usage");
  }
  return network;
}
