/**
 * What a finished command printed, checked: one line naming its failure, and no secret in any
 * spelling; for the security and TLS tests of both tiers.
 * @module
 */
import assert from "node:assert/strict";
import type { RunResult } from "./_helpers.ts";

/** Asserts `result` failed with exactly one stderr line matching `pattern` and no stack trace; returns that line. */
export function oneLine(result: RunResult, pattern: RegExp, what: string): string {
  assert.notEqual(result.code, 0, `${what} exited 0`);
  const lines = result.stderr.trim().split("\n").filter((line) => pattern.test(line));
  assert.equal(lines.length, 1, `${what}: one line matching ${pattern} in:\n${result.stderr}`);
  assert.doesNotMatch(result.stderr, /^\s+at /m, `${what}: a stack trace in:\n${result.stderr}`);
  return lines[0];
}

/** Every spelling of `secret` a log line could carry: raw, URL-encoded, JSON-escaped. */
function spellings(secret: string): string[] {
  return [...new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)])];
}

/** Asserts no spelling of any of `secrets` appears in `result`'s stdout or stderr. */
export function assertNoSecrets(result: RunResult, secrets: string[], what: string): void {
  for (const secret of secrets) {
    for (const spelling of spellings(secret)) {
      assert.ok(!result.stdout.includes(spelling), `${what}: stdout shows ${JSON.stringify(spelling)}`);
      assert.ok(!result.stderr.includes(spelling), `${what}: stderr shows ${JSON.stringify(spelling)}`);
    }
  }
}
