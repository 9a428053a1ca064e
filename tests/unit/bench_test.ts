/** The bench's argument rules, refused before it starts any service or command. */
import assert from "node:assert/strict";
import { bench } from "../_bench.ts";

Deno.test("the bench refuses an UPDATE larger than the snapshot's orders, naming both flags", async () => {
  const out = await bench("--only", "capture-peer", "--capture-update-rows", "5000", "--capture-snapshot-rows", "5000");
  assert.equal(out.code, 2);
  assert.match(out.stderr, /--capture-update-rows.*--capture-snapshot-rows.*5000/);
});
