import { ApiPromise, WsProvider, Keyring } from "@polkadot/api";
import { startLocalnet } from "./localnet.ts";
import { SUBTENSOR_SIGNED_EXTENSIONS as SIGNED_EXTENSIONS } from "../../core/chain/extensions.ts";
import { encrypt, roundAfterBlocks } from "../../core/timelock/index.ts";
import { hexToU8a, u8aToHex, stringToU8a } from "@polkadot/util";
const net = await startLocalnet({ blockMs: 200 });
const api = await ApiPromise.create({ provider: new WsProvider(net.url), signedExtensions: SIGNED_EXTENSIONS, noInitWarn: true });
const kr = new Keyring({ type: "sr25519" });
const miner = kr.addFromUri(net.accounts.miners[0]!.uri);
const send = (tx: any, pair: any) => new Promise<any>((resolve, reject) => {
  tx.signAndSend(pair, (r: any) => {
    console.log("status", r.status.type);
    if (r.status.isInBlock) {
      const failed = r.dispatchError ? (r.dispatchError.isModule ? (() => { const m = api.registry.findMetaError(r.dispatchError.asModule); return `${m.section}.${m.name}`; })() : r.dispatchError.toString()) : null;
      resolve({ events: r.events.map((e: any) => `${e.event.section}.${e.event.method}`), failed, block: r.status.asInBlock.toHex() });
    }
  }).catch(reject);
});
const text = api.createType("Text", "0123456789abcdef0123456789abcdef:https://example.com/train.py").toU8a();
const round = roundAfterBlocks(2, 1);
const ct = encrypt(text, round, hexToU8a(net.beacon.publicKey));
console.log("round", round, "ct", ct.length);
console.log(await send(api.tx.commitments.setCommitment(3, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(ct), reveal_round: round } }] }), miner));
console.log((await api.query.commitments.commitmentOf(3, miner.address)).toHuman());
for (let i = 0; i < 30; i++) {
  const rev = await api.query.commitments.revealedCommitments(3, miner.address);
  if ((rev as any).isSome) { console.log("revealed at", net.block(), (rev as any).unwrap().toJSON(), api.createType("Text", (rev as any).unwrap()[0][0]).toString()); break; }
  await new Promise(r => setTimeout(r, 500));
}
const validator = kr.addFromUri(net.accounts.validator.uri);
console.log(await send(api.tx.subtensorModule.setWeights(3, [1, 3], [65535, 100], 0), validator));
console.log((await api.query.subtensorModule.weights(3, 2)).toJSON(), (await api.query.subtensorModule.lastUpdate(3)).toJSON());
console.log(await send(api.tx.subtensorModule.setWeights(3, [1, 3], [65535, 100], 0), validator));
const dave = kr.addFromUri("//Dave");
console.log(await send(api.tx.subtensorModule.setWeights(3, [1], [65535], 0), dave));
console.log(await send(api.tx.balances.transferKeepAlive(miner.address, 10n**9n), dave));
console.log(await send(api.tx.system.remark("0x00"), dave));
try { await send(api.tx.commitments.setCommitment(3, { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(new Uint8Array(1100)), reveal_round: round } }] }), miner); } catch (e) { console.log("oversize:", (e as Error).message); }
try { await send(api.tx.balances.transferKeepAlive(miner.address, 1), dave); } catch (e) {console.log(e)}
try { await api.tx.balances.transferKeepAlive(miner.address, 1).signAndSend(dave, { nonce: 0 }); } catch (e) { console.log("stale:", (e as Error).message); }
await api.disconnect();
await net.stop();
