// Timelock throughput: our noble-curves encrypt/decrypt against the reference Rust crate compiled to
// wasm, in the same process. Prints operations per second and the ratio ours / reference.
// Run: bun bench/timelock.bench.ts [iterations]
import { hexToBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { QUICKNET, decrypt, encrypt } from "../core/timelock/index.ts";
import { referenceDecrypt, referenceEncrypt } from "../core/timelock/reference-wasm.ts";
import vectors from "../core/timelock/testdata/tle-vectors.json";

const iterations = Number(process.argv[2] ?? 20);
const round = 1000n;
const signature = hexToBytes(vectors.drand_rounds.find((r) => r.round === 1000)!.signature_g1_compressed_hex);
const message = utf8ToBytes("cf4817d9793e92a0b1c2d3e4f5061728:12345678:3:https://gist.github.com/someone/0123456789abcdef");

function opsPerSecond(fn: () => unknown): number {
  fn(); // warm-up: precomputes and JIT
  const start = performance.now();
  for (let i = 0; i < iterations; i++) fn();
  return iterations / ((performance.now() - start) / 1000);
}

const ours = encrypt(message, round, QUICKNET.publicKey);
const theirs = referenceEncrypt(message, round, QUICKNET.publicKey);
const rows = [
  ["encrypt", opsPerSecond(() => encrypt(message, round, QUICKNET.publicKey)), opsPerSecond(() => referenceEncrypt(message, round, QUICKNET.publicKey))],
  ["decrypt", opsPerSecond(() => decrypt(ours, signature)), opsPerSecond(() => referenceDecrypt(theirs, signature))],
] as const;

console.log(`timelock, ${message.length}-byte message, ${iterations} iterations each`);
for (const [name, ourRate, refRate] of rows) {
  console.log(`${name}: ours ${ourRate.toFixed(1)}/s, reference wasm ${refRate.toFixed(1)}/s, ratio ${(ourRate / refRate).toFixed(2)}`);
}
