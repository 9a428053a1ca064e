/** The bench's argument rules, refused before it starts any service or command. */
import assert from "node:assert/strict";
import { parseBenchFlags } from "../../scripts/bench_flags.ts";
import { bench } from "../_bench.ts";

Deno.test("the bench refuses an UPDATE larger than the snapshot's orders, naming both flags", async () => {
  const out = await bench("--only", "capture-peer", "--capture-update-rows", "5000", "--capture-snapshot-rows", "5000");
  assert.equal(out.code, 2);
  assert.match(out.stderr, /--capture-update-rows.*--capture-snapshot-rows.*5000/);
});

Deno.test("the JDBC sink peer runs in a full bench, not in --quick unless --jdbc-sink, not with --no-jdbc-sink", () => {
  assert.equal(parseBenchFlags([]).jdbcSink, true);
  assert.equal(parseBenchFlags(["--quick"]).jdbcSink, false);
  assert.equal(parseBenchFlags(["--quick", "--jdbc-sink"]).jdbcSink, true);
  assert.equal(parseBenchFlags(["--no-jdbc-sink"]).jdbcSink, false);
});

Deno.test("the bench refuses --jdbc-sink with --no-jdbc-sink, naming both", async () => {
  const out = await bench("--quick", "--jdbc-sink", "--no-jdbc-sink");
  assert.equal(out.code, 2);
  assert.match(out.stderr, /--jdbc-sink and --no-jdbc-sink/);
});
