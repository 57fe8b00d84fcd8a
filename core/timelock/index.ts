// drand quicknet timelock encryption, byte-compatible with subtensor's commitments and
// commit-reveal weights (ideal-labs `tle`, TinyBLS381, AES-GCM).
export { encrypt, decrypt } from "./tle.ts";
export { QUICKNET, beaconKeygen, signRound, verifyRound, roundAfterBlocks, type BeaconInfo } from "./beacon.ts";
export { TimelockError } from "./error.ts";
