// Validators score the same tokens only if they hold the same token shard. hparams pins the shard's
// sha256 (benchmark_data_sha256); a validator checks its executor's shard against the pin at start and
// refuses to run on another, and every result records the sha256 of the bytes its harness read.
import type { BenchmarkSettings } from "./contracts.ts";
import { UserError } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { Executor, TokenShard } from "./plugin.ts";

/**
 * The shard the executor provides for a profile, checked against the pin: a missing shard or another one
 * is a UserError naming both hashes; an unpinned one is a warning. Null when the profile reads no shard.
 */
export async function checkTokenShard(settings: BenchmarkSettings, executor: Executor, log: Logger): Promise<TokenShard | null> {
  const { profile, data_path: path, data_sha256: pin } = settings;
  if (path === null) return null;
  if (!executor.tokenShard) {
    log.warn(`the ${executor.name} executor cannot show its token shard before a run; each result's data_sha256 names the one it read`);
    return null;
  }
  let shard: TokenShard | null;
  try {
    shard = await executor.tokenShard(path, log);
  } catch (e) {
    throw new UserError(`token shard: ${(e as Error).message}`, "bad_data");
  }
  if (shard === null) {
    throw new UserError(`profile ${profile} reads the token shard ${path}, which the ${executor.name} executor does not have: write it with python3 local_test/setup_benchmark.py, or point the executor's dataPath at it`, "bad_data");
  }
  if (pin && shard.sha256 !== pin) {
    throw new UserError(`the token shard ${shard.where} has sha256 ${shard.sha256}, but hparams pins ${pin}: this validator would score other tokens than the others; get the pinned shard`, "bad_data");
  }
  if (pin) log.info(`token shard ${shard.where}: sha256 ${shard.sha256}, the one hparams pins`);
  else log.warn(`hparams pins no token shard (benchmark_data_sha256): scoring on ${shard.where}, sha256 ${shard.sha256}, which other validators cannot check they share`);
  return shard;
}
