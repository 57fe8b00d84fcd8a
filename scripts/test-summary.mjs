// The line a suite prints when it is skipped for a missing service (tests/services.ts writes it) and the
// closing line of `npm test` (scripts/bootstrap.mjs), which reads those lines back so that what was not
// tested shows in the one line a user or CI looks at. Plain JavaScript: bootstrap runs before Bun exists.

export const skipLine = (suite, reason, howToGet) => `skipped: ${suite} suite — ${reason}; ${howToGet}`;

export function skippedSuites(output) {
  return [...output.matchAll(/^skipped: (.+?) suite — (.+?); /gm)].map((m) => ({ suite: m[1], reason: m[2] }));
}

export function summaryLine(passed, failed, skipped) {
  const list = skipped.length ? ` (${skipped.map((s) => `${s.suite}: ${s.reason}`).join("; ")})` : "";
  return `${passed} passed, ${failed} failed, ${skipped.length} suite${skipped.length === 1 ? "" : "s"} skipped${list}`;
}
