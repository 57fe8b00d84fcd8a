import { Runtime } from "./runtime.ts";
const r = new Runtime();
const T = '{"hotkey":"Bytes","uids":"Vec<u16>","values":"Vec<u16>","versionKey":"u64"}';
const b = r.registry.createType(T, { hotkey: "0x" + "11".repeat(32), uids: [1, 4], values: [65535, 32768], versionKey: 9010001 }).toU8a();
const v: any = r.registry.createType(T, b);
console.log(b.length, v.encodedLength, v.hotkey.toU8a(true).length, Object.keys(v.toJSON()), v.uids, v.get?.("uids")?.toJSON());
const vv: any = v;
try { console.log([...vv.uids].map((c: any) => Number(c.toString())), BigInt(vv.versionKey.toString())); } catch (e) { console.log("ERR", e); }
