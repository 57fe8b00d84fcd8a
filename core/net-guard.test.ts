import { describe, expect, test } from "bun:test";
import { classifyAddress, parseIPv6, refuseAddress } from "./net-guard.ts";

const hex = (b: Uint8Array | null) => (b ? Buffer.from(b).toString("hex") : null);

describe("parseIPv6", () => {
  test("expands compressed forms and trailing dotted quads", () => {
    expect(hex(parseIPv6("::"))).toBe("0".repeat(32));
    expect(hex(parseIPv6("::1"))).toBe("0".repeat(31) + "1");
    expect(hex(parseIPv6("2001:db8::8a2e:370:7334"))).toBe("20010db8000000000000" + "8a2e03707334");
    expect(hex(parseIPv6("::ffff:127.0.0.1"))).toBe("00000000000000000000ffff7f000001");
    expect(hex(parseIPv6("::FFFF:7F00:1"))).toBe("00000000000000000000ffff7f000001");
    expect(hex(parseIPv6("1:2:3:4:5:6:1.2.3.4"))).toBe("00010002000300040005000601020304");
    expect(hex(parseIPv6("fe80::"))).toBe("fe80" + "0".repeat(28));
  });
  test("rejects what is not IPv6", () => {
    expect(parseIPv6("1.2.3.4")).toBeNull();
    expect(parseIPv6("1:2:3")).toBeNull();
    expect(parseIPv6("::g")).toBeNull();
    expect(parseIPv6("example.com")).toBeNull();
  });
});

describe("classifyAddress", () => {
  const cases: [string, string][] = [
    // IPv4
    ["8.8.8.8", "public"],
    ["140.82.112.3", "public"],
    ["185.199.108.133", "public"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.15.255.255", "public"],
    ["172.32.0.0", "public"],
    ["192.168.1.1", "private"],
    ["169.254.169.254", "link-local"],
    ["100.64.0.1", "cgnat"],
    ["100.127.255.255", "cgnat"],
    ["100.128.0.0", "public"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "reserved"],
    ["192.0.0.8", "reserved"],
    ["192.0.2.10", "documentation"],
    ["198.51.100.7", "documentation"],
    ["203.0.113.9", "documentation"],
    ["198.18.0.1", "benchmarking"],
    ["198.19.255.255", "benchmarking"],
    ["198.20.0.0", "public"],
    // IPv6
    ["2606:4700:4700::1111", "public"],
    ["2a00:1450:4001:82b::200e", "public"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["fe80::1", "link-local"],
    ["febf::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["fec0::1", "private"],
    ["fc00::1", "unique-local"],
    ["fd12:3456:789a::1", "unique-local"],
    ["ff02::1", "multicast"],
    ["2001:db8::1", "documentation"],
    ["3fff::1", "documentation"],
    ["2001::1", "reserved"], // Teredo
    ["2001:2::1", "reserved"], // benchmarking, inside the IETF block
    ["100::1", "reserved"],
    ["64:ff9b:1::1", "private"],
    ["4000::1", "reserved"],
    ["::2", "reserved"],
    // IPv4-compatible (deprecated) forms are refused whatever they carry
    ["::127.0.0.1", "reserved"],
    ["::8.8.8.8", "reserved"],
    ["::ffff:0:8.8.8.8", "reserved"],
    // Forms that wrap IPv4 are judged by the IPv4 address inside
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:10.0.0.1", "private"],
    ["::ffff:a9fe:a9fe", "link-local"],
    ["::ffff:8.8.8.8", "public"],
    ["64:ff9b::127.0.0.1", "loopback"],
    ["64:ff9b::a00:1", "private"],
    ["64:ff9b::8.8.8.8", "public"],
    ["2002:7f00:1::", "loopback"],
    ["2002:c0a8:101::1", "private"],
    ["2002:808:808::1", "public"],
    // Not addresses at all
    ["localhost", "invalid"],
    ["1.2.3", "invalid"],
    ["", "invalid"],
  ];
  for (const [ip, kind] of cases) {
    test(`${ip || "(empty)"} is ${kind}`, () => expect(classifyAddress(ip).kind).toBe(kind as never));
  }

  test("wrapped forms say what they wrap", () => {
    const c = classifyAddress("::ffff:127.0.0.1");
    expect(c.via).toContain("IPv4-mapped");
    expect(c.embedded).toBe("127.0.0.1");
    expect(c.range).toBe("127.0.0.0/8");
  });
});

describe("refuseAddress", () => {
  test("public addresses pass, others get a reason naming the range", () => {
    expect(refuseAddress("140.82.112.3")).toBeNull();
    expect(refuseAddress("10.1.2.3")).toBe("10.1.2.3 is a private address (10.0.0.0/8)");
    expect(refuseAddress("0.0.0.0")).toContain("an unspecified address");
    expect(refuseAddress("nope")).toContain("not a valid IP address");
  });
  test("allowLoopback admits plain loopback only", () => {
    expect(refuseAddress("127.0.0.1")).toContain("loopback");
    expect(refuseAddress("127.0.0.1", true)).toBeNull();
    expect(refuseAddress("127.8.9.10", true)).toBeNull();
    expect(refuseAddress("::1", true)).toBeNull();
    expect(refuseAddress("::ffff:127.0.0.1", true)).toContain("IPv4-mapped IPv6 (::ffff:0:0/96) wrapping 127.0.0.1");
    expect(refuseAddress("64:ff9b::7f00:1", true)).toContain("NAT64");
    expect(refuseAddress("::127.0.0.1", true)).not.toBeNull();
    expect(refuseAddress("10.0.0.1", true)).not.toBeNull();
    expect(refuseAddress("0.0.0.0", true)).not.toBeNull();
  });
});
