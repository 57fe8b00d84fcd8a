// Types for the TypeScript side (tests/services.ts and its test) of the plain-JavaScript module beside it.
export interface SkippedSuite {
  suite: string;
  reason: string;
}
/** `skipped: <suite> suite — <reason>; <howToGet>`: one line per skipped suite. */
export function skipLine(suite: string, reason: string, howToGet: string): string;
/** The suites a test run's output says were skipped, in the order they were. */
export function skippedSuites(output: string): SkippedSuite[];
/** `N passed, M failed, K suites skipped (suite: reason; …)`. */
export function summaryLine(passed: number, failed: number, skipped: SkippedSuite[]): string;
