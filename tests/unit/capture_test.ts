/** The capture's table and slot settings, read or refused before it connects to anything. */
import assert from "node:assert/strict";
import { loadCaptureConfig } from "../../lib/config.ts";
import { runCommand } from "../_helpers.ts";

Deno.test("capture refuses a slot name a replication command cannot carry, in one line", async () => {
  const run = await runCommand("produce", ["capture", "--slot", "Bad-Slot; drop"], {});
  assert.equal(run.code, 2);
  assert.equal(run.stderr.trim().split("\n").length, 1);
  assert.match(run.stderr, /--slot \(or CAPTURE_SLOT\) must be 1\.\.63 lower-case letters, digits or underscores/);
});

Deno.test("--tables takes schema.table names (a bare name is in public), defaults to users and orders, and refuses a name a topic cannot carry", () => {
  const tables = (args: string[], env: Record<string, string> = {}) => {
    const parsed = loadCaptureConfig(args, env);
    return parsed.help ? [] : parsed.config.tables.map((t) => `${t.schema}.${t.table}`);
  };
  assert.deepEqual(tables([]), ["public.users", "public.orders"]);
  assert.deepEqual(tables([], { CAPTURE_TABLES: "items, sales.Orders ,items" }), ["public.items", "sales.Orders"]);
  assert.deepEqual(tables(["--tables", "a.b"], { CAPTURE_TABLES: "c" }), ["a.b"]);
  assert.throws(() => tables(["--tables", "public.my-table"]), /--tables .* a-z A-Z 0-9 _.*got "public\.my-table"/);
  assert.throws(() => tables([], { CAPTURE_TABLES: " , " }), /CAPTURE_TABLES\) must name at least one table/);
  const fresh = loadCaptureConfig(["--new-snapshot"], {});
  assert.equal(!fresh.help && fresh.config.newSnapshot, true);
});
