// Code URL forms shared by the miner CLI (what goes on chain) and the validator (what gets fetched).
// A commitment is small (`<hash>:<block>:<index>:<url>` in 128 bytes), so the miner commits the
// shortest URL that still names the file, and the validator expands page URLs to their raw form.

const GIST_ID = /^(?:[0-9a-f]{20}|[0-9a-f]{32}|\d+)$/i;
const REVISION = /^[0-9a-f]{40}$/i;
const USER = /^[a-z\d](?:[a-z\d-]{0,38})$/i;

interface GistRef {
  user?: string;
  id: string;
  revision?: string;
  /** Path after the revision (or after /raw/), kept verbatim: gists can hold several files. */
  file?: string;
}

function parseUrl(url: string): URL | null {
  try {
    const u = new URL(url.trim());
    return u.protocol === "https:" || u.protocol === "http:" ? u : null;
  } catch {
    return null;
  }
}

const segments = (u: URL) => u.pathname.split("/").filter((s) => s !== "");

/** Reads any gist page or raw URL into its parts; null when `u` is not one. */
function parseGist(u: URL): GistRef | null {
  const host = u.hostname;
  const p = segments(u);
  if (host === "gist.github.com") {
    if (p.length >= 1 && GIST_ID.test(p[0]!) && (p.length === 1 || p[1] === "raw")) {
      return rawTail({ id: p[0]! }, p.slice(2));
    }
    if (p.length >= 2 && USER.test(p[0]!) && GIST_ID.test(p[1]!)) {
      const ref: GistRef = { user: p[0]!, id: p[1]! };
      if (p.length === 2) return ref;
      if (p[2] === "raw") return rawTail(ref, p.slice(3));
      if (p.length === 3 && REVISION.test(p[2]!)) return { ...ref, revision: p[2]! };
    }
    return null;
  }
  if (host === "gist.githubusercontent.com" && p.length >= 3 && GIST_ID.test(p[1]!) && p[2] === "raw") {
    return rawTail({ user: p[0]!, id: p[1]! }, p.slice(3));
  }
  return null;
}

function rawTail(ref: GistRef, tail: string[]): GistRef {
  if (tail.length && REVISION.test(tail[0]!)) return { ...ref, revision: tail[0]!, file: tail.slice(1).join("/") || undefined };
  return { ...ref, file: tail.join("/") || undefined };
}

/**
 * The raw form of a code URL: gist pages go to gist.githubusercontent.com (or, without a user, to
 * gist.github.com/ID/raw, which GitHub redirects there), GitHub blob pages to raw.githubusercontent.com.
 * Anything else is returned unchanged; the fetcher decides whether it is acceptable.
 */
export function normalizeCodeUrl(url: string): string {
  const u = parseUrl(url);
  if (!u) return url;
  const gist = parseGist(u);
  if (gist) {
    const tail = [gist.revision, gist.file].filter(Boolean).join("/");
    if (!gist.user) return `https://gist.github.com/${gist.id}/raw${tail ? `/${tail}` : ""}`;
    return `https://gist.githubusercontent.com/${gist.user}/${gist.id}/raw${tail ? `/${tail}` : ""}`;
  }
  if (u.hostname === "github.com" || u.hostname === "www.github.com") {
    const p = segments(u);
    if (p.length >= 5 && (p[2] === "blob" || p[2] === "raw")) {
      return `https://raw.githubusercontent.com/${p[0]}/${p[1]}/${p.slice(3).join("/")}`;
    }
  }
  return url;
}

/**
 * The shortest URL for a gist that still fetches the same file: `https://gist.github.com/ID` (the gist
 * id is global, so the user is dropped), or the raw URL without its revision when a file is named.
 * The revision is dropped because the committed sha256 already pins the content, and a 40-character
 * revision does not fit beside it. Non-gist URLs are returned unchanged.
 */
export function shortenGistUrl(url: string): string {
  const u = parseUrl(url);
  const gist = u && parseGist(u);
  if (!gist) return url;
  if (gist.file) {
    return gist.user
      ? `https://gist.githubusercontent.com/${gist.user}/${gist.id}/raw/${gist.file}`
      : `https://gist.github.com/${gist.id}/raw/${gist.file}`;
  }
  return `https://gist.github.com/${gist.id}`;
}
