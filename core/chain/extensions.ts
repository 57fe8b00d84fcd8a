// Subtensor's own transaction extensions. They carry no bytes in the extrinsic or in the signed payload,
// but @polkadot/api must know them by name to build the payload in the runtime's order; unknown ones
// would only be warned about, and a future one with real bytes would then sign garbage.
import type { ExtDef } from "@polkadot/types/extrinsic/signedExtensions/types";

const EMPTY = { extrinsic: {}, payload: {} };

export const SUBTENSOR_SIGNED_EXTENSIONS: ExtDef = {
  // current runtimes (spec ≥ 346)
  SubtensorTransactionExtension: EMPTY,
  DrandPriority: EMPTY,
  SudoTransactionExtension: EMPTY,
  // older runtimes (spec 240 era)
  SubtensorSignedExtension: EMPTY,
  CommitmentsSignedExtension: EMPTY,
};
