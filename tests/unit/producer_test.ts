/** The producer's dry run: the seeded stream printed, the same bytes every time, no broker needed. */
import assert from "node:assert/strict";
import { parseOrderEvent, parseUserEvent } from "../../lib/model.ts";
import { runCommand } from "../_helpers.ts";

Deno.test("produce --dry-run --seed 7 prints the same bytes twice and needs no broker", async () => {
  const env = { KAFKA_BROKERS: "localhost:1" };
  const first = await runCommand("produce", ["--dry-run", "--seed", "7", "--users", "500", "--orders", "1000"], env);
  const second = await runCommand("produce", ["--dry-run", "--seed", "7", "--users", "500", "--orders", "1000"], env);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(second.code, 0, second.stderr);
  const lines = first.stdout.trimEnd().split("\n");
  assert.equal(lines.length, 1500);
  assert.equal(first.stdout, second.stdout);
  for (const line of lines.slice(0, 500)) parseUserEvent(line);
  for (const line of lines.slice(500)) parseOrderEvent(line);
  const other = await runCommand("produce", ["--dry-run", "--seed", "8", "--users", "500", "--orders", "1000"], env);
  assert.notEqual(other.stdout, first.stdout);
});
