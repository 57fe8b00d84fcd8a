// Which IP addresses the code fetcher may connect to. A committed URL is attacker-chosen, so anything
// that reaches the validator's own host, its LAN, or a cloud metadata service is refused. The tables
// follow the IANA IPv4/IPv6 special-purpose address registries.
import { isIPv4, isIPv6 } from "node:net";

export type AddressKind =
  | "public"
  | "loopback"
  | "private"
  | "link-local"
  | "cgnat"
  | "unspecified"
  | "multicast"
  | "reserved"
  | "documentation"
  | "benchmarking"
  | "unique-local"
  | "invalid";

export interface AddressClass {
  kind: AddressKind;
  /** The registry block that matched, e.g. `10.0.0.0/8`; empty for public addresses. */
  range: string;
  /** Set when the address wraps an IPv4 address (mapped, NAT64, 6to4): the kind is the embedded one's. */
  via?: string;
  embedded?: string;
}

type V4Rule = [base: string, bits: number, kind: AddressKind];
const V4_RULES: V4Rule[] = [
  ["0.0.0.0", 8, "unspecified"],
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "cgnat"],
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"],
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "reserved"],
  ["192.0.2.0", 24, "documentation"],
  ["192.88.99.0", 24, "reserved"],
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "benchmarking"],
  ["198.51.100.0", 24, "documentation"],
  ["203.0.113.0", 24, "documentation"],
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"],
];

type V6Rule = [base: string, bits: number, kind: AddressKind];
// Checked in order; the first match wins. Embedded-IPv4 prefixes are handled before these.
const V6_RULES: V6Rule[] = [
  ["::", 128, "unspecified"],
  ["::1", 128, "loopback"],
  ["::", 96, "reserved"], // deprecated IPv4-compatible ::a.b.c.d: nothing legitimate lives there
  ["::ffff:0:0:0", 96, "reserved"], // SIIT IPv4-translated
  ["64:ff9b:1::", 48, "private"], // local-use NAT64
  ["100::", 64, "reserved"], // discard-only
  ["2001:db8::", 32, "documentation"],
  ["2001::", 23, "reserved"], // IETF protocol assignments: Teredo, ORCHID, benchmarking, ...
  ["3fff::", 20, "documentation"],
  ["fc00::", 7, "unique-local"],
  ["fe80::", 10, "link-local"],
  ["fec0::", 10, "private"], // deprecated site-local
  ["ff00::", 8, "multicast"],
];

function v4ToInt(ip: string): number {
  return ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

function intToV4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** 16 bytes of an IPv6 address, or null when `ip` is not one. Accepts a trailing dotted quad. */
export function parseIPv6(ip: string): Uint8Array | null {
  if (!isIPv6(ip)) return null;
  let text = ip.toLowerCase();
  const words: number[] = [];
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (quad) {
    const n = v4ToInt(quad[1]!);
    tail = [n >>> 16, n & 0xffff];
    text = text.slice(0, -quad[1]!.length);
    if (text.endsWith(":") && !text.endsWith("::")) text = text.slice(0, -1);
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const parse = (s: string) => (s === "" ? [] : s.split(":").map((w) => parseInt(w, 16)));
  const left = parse(head);
  const right = [...parse(rest ?? ""), ...tail];
  if (rest === undefined) {
    words.push(...left, ...right);
  } else {
    words.push(...left, ...new Array(8 - left.length - right.length).fill(0), ...right);
  }
  if (words.length !== 8) return null;
  const bytes = new Uint8Array(16);
  words.forEach((w, i) => {
    bytes[2 * i] = w >>> 8;
    bytes[2 * i + 1] = w & 255;
  });
  return bytes;
}

function prefixMatch(addr: Uint8Array, base: Uint8Array, bits: number): boolean {
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[i]! & mask) !== (base[i]! & mask)) return false;
  }
  return true;
}

const v6Rules = V6_RULES.map(([base, bits, kind]) => ({ base: parseIPv6(base)!, bits, kind, range: `${base}/${bits}` }));
const MAPPED = parseIPv6("::ffff:0:0")!;
const NAT64 = parseIPv6("64:ff9b::")!;
const SIX_TO_FOUR = parseIPv6("2002::")!;

function classifyV4(ip: string): AddressClass {
  const n = v4ToInt(ip);
  for (const [base, bits, kind] of V4_RULES) {
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    if (((n & mask) >>> 0) === v4ToInt(base)) return { kind, range: `${base}/${bits}` };
  }
  return { kind: "public", range: "" };
}

function embeddedV4(bytes: Uint8Array, offset: number): string {
  return intToV4(((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0);
}

/** What kind of address `ip` is (a literal: no brackets; an IPv6 zone id counts as link-local). */
export function classifyAddress(ip: string): AddressClass {
  if (isIPv4(ip)) return classifyV4(ip);
  if (ip.includes("%")) return { kind: "link-local", range: "scoped address (zone id)" };
  const bytes = parseIPv6(ip);
  if (!bytes) return { kind: "invalid", range: "not an IP address" };
  // Addresses that carry an IPv4 address reach that IPv4 host, so they are judged by it.
  const wrapped: [Uint8Array, number, number, string][] = [
    [MAPPED, 96, 12, "IPv4-mapped IPv6 (::ffff:0:0/96)"],
    [NAT64, 96, 12, "NAT64 (64:ff9b::/96)"],
    [SIX_TO_FOUR, 16, 2, "6to4 (2002::/16)"],
  ];
  for (const [base, bits, offset, via] of wrapped) {
    if (prefixMatch(bytes, base, bits)) {
      const embedded = embeddedV4(bytes, offset);
      return { ...classifyV4(embedded), via, embedded };
    }
  }
  for (const rule of v6Rules) {
    if (prefixMatch(bytes, rule.base, rule.bits)) return { kind: rule.kind, range: rule.range };
  }
  // Only global unicast (2000::/3) is routable on the public internet.
  if ((bytes[0]! & 0xe0) !== 0x20) return { kind: "reserved", range: "outside 2000::/3" };
  return { kind: "public", range: "" };
}

/**
 * Why the fetcher must not connect to `ip`, or null when it may. `allowLoopback` (tests only) lets
 * plain 127.0.0.0/8 and ::1 through, never a loopback address wrapped in another form.
 */
export function refuseAddress(ip: string, allowLoopback = false): string | null {
  const c = classifyAddress(ip);
  if (c.kind === "public") return null;
  if (c.kind === "loopback" && allowLoopback && !c.via) return null;
  const label = c.kind === "invalid" ? "not a valid IP address" : `${c.kind === "unspecified" ? "an" : "a"} ${c.kind} address`;
  const where = [c.via && `${c.via} wrapping ${c.embedded}`, c.range].filter(Boolean).join(", ");
  return `${ip} is ${label}${where ? ` (${where})` : ""}`;
}
