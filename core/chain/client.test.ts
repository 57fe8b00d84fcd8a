import { describe, expect, test } from "bun:test";
import { TypeRegistry } from "@polkadot/types";
import { u8aToHex } from "@polkadot/util";
import { decodeRevealedText, encodeScaleText, weightsCommitPayload } from "./client.ts";

describe("payload encodings", () => {
  test("the weights commit plaintext matches the chain-spec vector byte for byte", () => {
    const hotkey = Uint8Array.from({ length: 32 }, (_, i) => i);
    const bytes = weightsCommitPayload(new TypeRegistry(), hotkey, [0, 1], [65535, 32768], 9010001);
    const expected = "0x80" + u8aToHex(hotkey, -1, false) + "08" + "0000" + "0100" + "08" + "ffff" + "0080" + "517b890000000000";
    expect(u8aToHex(bytes) as string).toBe(expected);
  });

  test("commitment text is a SCALE string, and revealed bytes decode back", () => {
    const short = encodeScaleText("abc");
    expect(u8aToHex(short)).toBe("0x0c616263");
    const long = "x".repeat(72);
    // 72 bytes takes the two-byte compact prefix 0x2101 (chain-spec §2.3).
    expect(u8aToHex(encodeScaleText(long).subarray(0, 2))).toBe("0x2101");
    expect(decodeRevealedText(encodeScaleText(long))).toBe(long);
    expect(decodeRevealedText(encodeScaleText("héllo ✓"))).toBe("héllo ✓");
  });

  test("bytes without a matching length prefix are read whole rather than dropped", () => {
    expect(decodeRevealedText(new TextEncoder().encode("{\"code_url\":\"https://x.org\"}"))).toBe("{\"code_url\":\"https://x.org\"}");
  });
});
