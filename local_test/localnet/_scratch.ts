import { ApiPromise, WsProvider, Keyring } from "@polkadot/api";
import { startLocalnet } from "./localnet.ts";
import { SUBTENSOR_SIGNED_EXTENSIONS } from "../../core/chain/extensions.ts";
import { encrypt, roundAfterBlocks } from "../../core/timelock/index.ts";
import { hexToU8a, u8aToHex } from "@polkadot/util";
import { createLogger } from "../../core/log.ts";
const net = await startLocalnet({ blockMs: 100, tempo: 4, weightsRateLimit: 0, commitReveal: true, log: createLogger({level:"debug"}) });
const api = await ApiPromise.create({ provider: new WsProvider(net.url), signedExtensions: SUBTENSOR_SIGNED_EXTENSIONS, noInitWarn: true });
const v = new Keyring({ type: "sr25519" }).addFromUri("//Charlie");
const payload = api.createType('{"hotkey":"Bytes","uids":"Vec<u16>","values":"Vec<u16>","versionKey":"u64"}', { hotkey: u8aToHex(v.publicKey), uids: [1, 4], values: [65535, 32768], versionKey: 9010001 }).toU8a();
const round = roundAfterBlocks(0, 0) + 1n;
const commit = encrypt(payload, round, hexToU8a(net.beacon.publicKey));
await new Promise<void>((res, rej) => api.tx.subtensorModule.commitTimelockedWeights(3, u8aToHex(commit), round, 4).signAndSend(v, (r) => { console.log(r.status.type, r.dispatchError?.toString(), r.events.map(e => e.event.method)); if (r.status.isInBlock || r.status.isFinalized) res(); }).catch(rej));
for (let i = 0; i < 40; i++) {
  const e = await api.query.subtensorModule.timelockedWeightCommits.entries(3);
  const evs = (await api.query.system.events()).map((x: any) => x.event.method);
  console.log(net.block(), (await api.query.drand.lastStoredRound()).toString(), round, e.map(([k, v]) => k.args.map(String).join(",") + ":" + (v as any).length), evs.join(","), JSON.stringify((await api.query.subtensorModule.weights(3, 2)).toJSON()));
  await new Promise(r => setTimeout(r, 250));
}
await api.disconnect(); await net.stop();
