import { expect, test } from "bun:test";
import { StateHistory } from "./history.ts";

const b = (n: number) => new Uint8Array([n]);

test("each block sees the values as of that block; pruning keeps the window and forgets deleted keys", () => {
  const h = new StateHistory(0, [["a", b(0)]]);
  h.record(1, [["a", b(1)], ["b", b(1)]]);
  h.record(2, [["a", undefined]]);
  h.record(3, [["b", b(3)]]);
  expect(h.at(0).get("a")).toEqual(b(0));
  expect(h.at(0).get("b")).toBeUndefined();
  expect([...h.at(1).keys()].sort()).toEqual(["a", "b"]);
  expect([...h.at(2).keys()]).toEqual(["b"]);
  expect(h.at(2).get("b")).toEqual(b(1));
  expect(h.at(5).get("b")).toEqual(b(3));

  h.prune(2);
  expect(h.has(1)).toBe(false);
  expect(h.has(2)).toBe(true);
  expect(h.at(2).get("b")).toEqual(b(1)); // the version in force at the window's start survives
  expect(h.at(3).get("b")).toEqual(b(3));
  expect([...h.at(3).keys()]).toEqual(["b"]); // "a" was deleted before the window: gone entirely
});
