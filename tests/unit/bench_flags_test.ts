/**
 * The bench's flags (scripts/bench_flags.ts): the JDBC sink peer runs in full runs, not in
 * `--quick` ones unless asked, and the two flags that set it cannot be given together.
 */
import assert from "node:assert/strict";
import { parseBenchFlags } from "../../scripts/bench_flags.ts";

Deno.test("the JDBC sink peer runs in a full bench and is skipped by --quick", () => {
  assert.equal(parseBenchFlags([]).jdbcSink, true);
  assert.equal(parseBenchFlags(["--quick"]).jdbcSink, false);
});

Deno.test("--jdbc-sink runs the peer in a quick bench, --no-jdbc-sink skips it in a full one", () => {
  assert.equal(parseBenchFlags(["--quick", "--jdbc-sink"]).jdbcSink, true);
  assert.equal(parseBenchFlags(["--no-jdbc-sink"]).jdbcSink, false);
});

Deno.test("--jdbc-sink with --no-jdbc-sink is refused with a RangeError naming both", () => {
  assert.throws(() => parseBenchFlags(["--jdbc-sink", "--no-jdbc-sink"]), /--jdbc-sink and --no-jdbc-sink/);
});
