// The subtensor runtime APIs that SDK clients read a subnet through (NeuronInfoRuntimeApi's neurons,
// full and lite, SubnetInfoRuntimeApi's metagraph and subnet info), computed the way the runtime computes
// them: from the storage items each field is read from, so what a client sees through the API agrees
// with what it reads from storage. Values the localnet never writes (rank, trust, emission, axons…)
// come out as those items' defaults, as on a fresh subnet. The caller encodes the result with the
// method's output type from the metadata; fields left out here encode as zero/empty.
import type { Codec } from "@polkadot/types/types";
import { u8aToHex } from "@polkadot/util";
import type { StateView } from "./history.ts";
import type { Runtime } from "./runtime.ts";

const num = (c: Codec | undefined) => Number(c?.toString() ?? 0);
const big = (c: Codec | undefined) => BigInt(c?.toString() ?? 0);
const isTrue = (c: Codec | undefined) => (c as (Codec & { isTrue?: boolean }) | undefined)?.isTrue === true;

/** Typed reads of subtensor storage from one block's state. */
class Reader {
  constructor(
    readonly runtime: Runtime,
    readonly view: StateView,
  ) {}

  /** The decoded value, the item's default for a Default item, undefined for an absent Option or an item this runtime lacks. */
  get(item: string, ...args: unknown[]): Codec | undefined {
    if (!this.runtime.decorated.query.subtensorModule?.[item]) return undefined;
    return this.runtime.decode("subtensorModule", item, this.view.get(u8aToHex(this.runtime.key("subtensorModule", item, ...args))));
  }

  /** Element `uid` of a per-subnet vector item (Rank, LastUpdate, ValidatorPermit…), 0 past its end. */
  at(item: string, netuid: number, uid: number): Codec | undefined {
    const list = this.get(item, netuid) as (Codec & { [i: number]: Codec; length: number }) | undefined;
    return list && uid < list.length ? list[uid] : undefined;
  }
}

function hotkeys(r: Reader, netuid: number): string[] {
  const n = num(r.get("subnetworkN", netuid));
  return Array.from({ length: n }, (_, uid) => u8aToHex(r.get("keys", netuid, uid)!.toU8a()));
}

function axon(r: Reader, netuid: number, hotkey: string) {
  return r.get("axons", netuid, hotkey) ?? {};
}

/** NeuronInfoLite for one uid (neuron_info.rs `get_neuron_lite_subnet_exists`). */
function neuronLite(r: Reader, netuid: number, uid: number, hotkey: string) {
  const coldkey = u8aToHex(r.get("owner", hotkey)!.toU8a());
  return {
    hotkey,
    coldkey,
    uid,
    netuid,
    active: isTrue(r.at("active", netuid, uid)),
    axonInfo: axon(r, netuid, hotkey),
    prometheusInfo: r.get("prometheus", netuid, hotkey) ?? {},
    stake: [[coldkey, big(r.get("totalHotkeyAlpha", hotkey, netuid))]],
    rank: num(r.at("rank", netuid, uid)),
    emission: big(r.at("emission", netuid, uid)),
    incentive: num(r.at("incentive", netuid, uid)),
    consensus: num(r.at("consensus", netuid, uid)),
    trust: num(r.at("trust", netuid, uid)),
    validatorTrust: num(r.at("validatorTrust", netuid, uid)),
    dividends: num(r.at("dividends", netuid, uid)),
    lastUpdate: big(r.at("lastUpdate", netuid, uid)),
    validatorPermit: isTrue(r.at("validatorPermit", netuid, uid)),
    pruningScore: num(r.at("pruningScores", netuid, uid)),
  };
}

/** NeuronInfo: the lite fields plus the neuron's stored weights and bonds rows. */
function neuron(r: Reader, netuid: number, uid: number, hotkey: string) {
  const row = (item: string) => [...((r.get(item, netuid, uid) as (Codec & Iterable<Codec & [Codec, Codec]>) | undefined) ?? [])].map(([u, w]) => [num(u), num(w)]);
  return { ...neuronLite(r, netuid, uid, hotkey), weights: row("weights"), bonds: row("bonds") };
}

type NeuronBuilder = typeof neuronLite | typeof neuron;

function all(build: NeuronBuilder, runtime: Runtime, view: StateView, netuid: number) {
  const r = new Reader(runtime, view);
  if (!isTrue(r.get("networksAdded", netuid))) return [];
  return hotkeys(r, netuid).map((hotkey, uid) => build(r, netuid, uid, hotkey));
}

function one(build: NeuronBuilder, runtime: Runtime, view: StateView, netuid: number, uid: number) {
  const r = new Reader(runtime, view);
  if (!isTrue(r.get("networksAdded", netuid)) || uid >= num(r.get("subnetworkN", netuid))) return null;
  return build(r, netuid, uid, u8aToHex(r.get("keys", netuid, uid)!.toU8a()));
}

export const neuronsLite = (runtime: Runtime, view: StateView, netuid: number) => all(neuronLite, runtime, view, netuid);
export const neuronLiteAt = (runtime: Runtime, view: StateView, netuid: number, uid: number) => one(neuronLite, runtime, view, netuid, uid);
export const neurons = (runtime: Runtime, view: StateView, netuid: number) => all(neuron, runtime, view, netuid);
export const neuronAt = (runtime: Runtime, view: StateView, netuid: number, uid: number) => one(neuron, runtime, view, netuid, uid);

/** The subnet-wide hyperparameters both SubnetInfo and Metagraph carry, under the runtime's field names. */
function subnetParams(r: Reader, netuid: number) {
  return {
    rho: num(r.get("rho", netuid)),
    kappa: num(r.get("kappa", netuid)),
    difficulty: big(r.get("difficulty", netuid)),
    immunityPeriod: num(r.get("immunityPeriod", netuid)),
    minAllowedWeights: num(r.get("minAllowedWeights", netuid)),
    maxWeightsLimit: num(r.get("maxWeightsLimit", netuid)),
    tempo: num(r.get("tempo", netuid)),
    burn: big(r.get("burn", netuid)),
  };
}

export function subnetInfo(runtime: Runtime, view: StateView, netuid: number, block: number) {
  const r = new Reader(runtime, view);
  if (!isTrue(r.get("networksAdded", netuid))) return null;
  return {
    netuid,
    ...subnetParams(r, netuid),
    maxAllowedValidators: num(r.get("maxAllowedValidators", netuid)),
    subnetworkN: num(r.get("subnetworkN", netuid)),
    maxAllowedUids: num(r.get("maxAllowedUids", netuid)),
    blocksSinceLastStep: BigInt(block) - big(r.get("lastMechansimStepBlock", netuid)),
    networkModality: 0,
    owner: u8aToHex(r.get("subnetOwner", netuid)!.toU8a()),
  };
}

/** Metagraph (metagraph.rs `get_metagraph`), per-uid columns in uid order. */
export function metagraph(runtime: Runtime, view: StateView, netuid: number, block: number) {
  const r = new Reader(runtime, view);
  if (!isTrue(r.get("networksAdded", netuid))) return null;
  const keys = hotkeys(r, netuid);
  const column = (item: string, read: (c: Codec | undefined) => unknown) => keys.map((_, uid) => read(r.at(item, netuid, uid)));
  const alpha = keys.map((hk) => big(r.get("totalHotkeyAlpha", hk, netuid)));
  const lastStep = big(r.get("lastMechansimStepBlock", netuid));
  const alphaValues = r.get("alphaValues", netuid) as (Codec & [Codec, Codec]) | undefined;
  const symbol = r.get("tokenSymbol", netuid) as (Codec & { toU8a(bare: true): Uint8Array }) | undefined;
  return {
    netuid,
    symbol: symbol ? [...symbol.toU8a(true)] : [],
    identity: r.get("subnetIdentitiesV3", netuid) ?? null,
    networkRegisteredAt: big(r.get("networkRegisteredAt", netuid)),
    ownerHotkey: u8aToHex(r.get("subnetOwnerHotkey", netuid)!.toU8a()),
    ownerColdkey: u8aToHex(r.get("subnetOwner", netuid)!.toU8a()),
    block: BigInt(block),
    lastStep,
    blocksSinceLastStep: BigInt(block) - lastStep,
    alphaIn: big(r.get("subnetAlphaIn", netuid)),
    alphaOut: big(r.get("subnetAlphaOut", netuid)),
    taoIn: big(r.get("subnetTAO", netuid)),
    subnetVolume: big(r.get("subnetVolume", netuid)),
    movingPrice: r.get("subnetMovingPrice", netuid) ?? { bits: 0 },
    ...subnetParams(r, netuid),
    weightsVersion: big(r.get("weightsVersionKey", netuid)),
    weightsRateLimit: big(r.get("weightsSetRateLimit", netuid)),
    activityCutoff: num(r.get("activityCutoff", netuid)),
    maxValidators: num(r.get("maxAllowedValidators", netuid)),
    numUids: keys.length,
    maxUids: num(r.get("maxAllowedUids", netuid)),
    registrationAllowed: isTrue(r.get("networkRegistrationAllowed", netuid)),
    powRegistrationAllowed: isTrue(r.get("networkPowRegistrationAllowed", netuid)),
    minDifficulty: big(r.get("minDifficulty", netuid)),
    maxDifficulty: big(r.get("maxDifficulty", netuid)),
    minBurn: big(r.get("minBurn", netuid)),
    maxBurn: big(r.get("maxBurn", netuid)),
    adjustmentAlpha: big(r.get("adjustmentAlpha", netuid)),
    adjustmentInterval: num(r.get("adjustmentInterval", netuid)),
    targetRegsPerInterval: num(r.get("targetRegistrationsPerInterval", netuid)),
    maxRegsPerBlock: num(r.get("maxRegistrationsPerBlock", netuid)),
    servingRateLimit: big(r.get("servingRateLimit", netuid)),
    commitRevealWeightsEnabled: isTrue(r.get("commitRevealWeightsEnabled", netuid)),
    commitRevealPeriod: big(r.get("revealPeriodEpochs", netuid)),
    liquidAlphaEnabled: isTrue(r.get("liquidAlphaOn", netuid)),
    alphaLow: alphaValues ? num(alphaValues[0]) : 0,
    alphaHigh: alphaValues ? num(alphaValues[1]) : 0,
    bondsMovingAvg: big(r.get("bondsMovingAverage", netuid)),
    hotkeys: keys,
    coldkeys: keys.map((hk) => u8aToHex(r.get("owner", hk)!.toU8a())),
    identities: keys.map((hk) => r.get("identitiesV2", u8aToHex(r.get("owner", hk)!.toU8a())) ?? null),
    axons: keys.map((hk) => axon(r, netuid, hk)),
    active: column("active", isTrue),
    validatorPermit: column("validatorPermit", isTrue),
    pruningScore: column("pruningScores", num),
    lastUpdate: column("lastUpdate", big),
    emission: column("emission", big),
    dividends: column("dividends", num),
    incentives: column("incentive", num),
    consensus: column("consensus", num),
    trust: column("trust", num),
    rank: column("rank", num),
    blockAtRegistration: keys.map((_, uid) => big(r.get("blockAtRegistration", netuid, uid))),
    alphaStake: alpha,
    // No root subnet here, so no TAO stake: total stake is the alpha stake.
    taoStake: keys.map(() => 0n),
    totalStake: alpha,
    taoDividendsPerHotkey: keys.map((hk) => [hk, 0n]),
    alphaDividendsPerHotkey: keys.map((hk) => [hk, 0n]),
  };
}
