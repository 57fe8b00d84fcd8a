// OpenSSH known_hosts verification for the ssh executor: a GPU host is trusted only when its key is on
// file, exactly as `ssh` with StrictHostKeyChecking=yes would decide.
import { createHash, createHmac } from "node:crypto";

export type HostKeyVerdict = { kind: "known" } | { kind: "unknown" } | { kind: "mismatch" } | { kind: "revoked" };

/** `SHA256:…`, as ssh-keygen -l prints it. */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")}`;
}

/** The name ssh looks a host up by: `host` on port 22, `[host]:port` otherwise. */
export function hostEntryName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function glob(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${re}$`, "i").test(name);
}

function hostMatches(field: string, name: string): boolean {
  if (field.startsWith("|1|")) {
    const [, , salt, hash] = field.split("|");
    if (!salt || !hash) return false;
    return createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === hash;
  }
  let matched = false;
  for (const p of field.split(",")) {
    if (p.startsWith("!")) {
      if (glob(p.slice(1), name)) return false;
    } else if (glob(p, name)) matched = true;
  }
  return matched;
}

/** Looks a presented host key up in the text of a known_hosts file. */
export function verifyHostKey(knownHosts: string, host: string, port: number, keyBlob: Buffer): HostKeyVerdict {
  const name = hostEntryName(host, port);
  let sawHost = false;
  for (const raw of knownHosts.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const marker = fields[0]!.startsWith("@") ? fields.shift() : undefined;
    const [hosts, , key] = fields;
    if (!hosts || !key || marker === "@cert-authority" || !hostMatches(hosts, name)) continue;
    const same = Buffer.from(key, "base64").equals(keyBlob);
    if (marker === "@revoked") {
      if (same) return { kind: "revoked" };
      continue;
    }
    if (same) return { kind: "known" };
    sawHost = true;
  }
  return sawHost ? { kind: "mismatch" } : { kind: "unknown" };
}
