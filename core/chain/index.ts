// The chain client's public surface: import from here, not from the files behind it.
export { connectChain, decodeRevealedText, encodeScaleText, type ChainClient, type ChainOptions, type CommitmentReceipt, type CommitmentStatus, type CommitOrigin, type PendingCommitment, type DroppedCommitment, type RevealedCommitment, type WeightsOutcome } from "./client.ts";
export { ChainError, type ChainErrorCode } from "./errors.ts";
export { NETWORKS, resolveEndpoint } from "./networks.ts";
export { HOTKEY_URI_ENV, loadHotkey, pairFromUri, type Hotkey, type WalletSpec } from "./wallet.ts";
