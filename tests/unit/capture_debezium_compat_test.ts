/**
 * How the capture's output is compared with Debezium's (tests/capture_debezium_compat_test.ts runs
 * the comparison against the real connector): leaves by topic, key and path, capture-time values,
 * and docs/CAPTURE.md's list of known differences.
 */
import assert from "node:assert/strict";
import { compareOutputs, formatDifference, knownDifferences } from "../_debezium.ts";

Deno.test("the comparison names each differing leaf by topic, key and path, headers included but the engine's context headers, and 64-bit integers compare exactly", () => {
  const key =
    '{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"}]},"payload":{"id":1}}';
  const value = (after: string, lsn: string) =>
    `{"schema":{"type":"struct","fields":[{"type":"string","optional":true,"field":"name"}]},` +
    `"payload":{"after":${after},"source":{"version":"x","lsn":${lsn}},"op":"u","ts_us":1796050665374788}}`;
  const ours = [{ topic: "p.public.t", key, value: value('{"name":"a"}', "9223372036854775806") }];
  const theirs = [{ topic: "p.public.t", key, value: value('{"name":"b"}', "9223372036854775807") }];
  const found = compareOutputs(ours, theirs).map(formatDifference);
  assert.deepEqual(found, [
    'p.public.t {"id":1}#0 value.payload.after.name: ours="a" debezium="b"',
    'p.public.t {"id":1}#0 value.payload.source.lsn: ours=9223372036854775806 debezium=9223372036854775807',
  ]);
  const headers = (newKey: string) => ({ "__debezium.newkey": newKey, "__debezium.context.runId": "run-1" });
  const moved = (newKey: string, runId: string) => ({
    topic: "p.public.t",
    key,
    value: null,
    headers: { ...headers(newKey), "__debezium.context.runId": runId },
  });
  assert.deepEqual(
    compareOutputs([moved('{"id":2}', "a")], [moved('{"id":2}', "b")]),
    [],
    "context headers are not compared",
  );
  assert.deepEqual(compareOutputs([moved('{"id":2}', "a")], [moved('{"id":3}', "a")]).map(formatDifference), [
    'p.public.t {"id":1}#0 headers.__debezium.newkey.id: ours=2 debezium=3',
  ]);
  const missing = compareOutputs([], [{ topic: "p.public.t", key, value: null }]).map(formatDifference);
  assert.deepEqual(missing, ['p.public.t {"id":1}#0 (record): ours=(none) debezium=tombstone']);
});

Deno.test("capture-time values compare by presence and type, and the envelope's precision across records (a snapshot read's source times' not)", () => {
  const record = (op: string, ts: string, txId: string) => ({
    topic: "p.public.t",
    key: '{"payload":{"id":1}}',
    value: `{"payload":{"op":"${op}","source":{"txId":${txId},"ts_us":${ts}},"ts_us":${ts}}}`,
  });
  const times = ["1796050665374000", "1796050665375000", "1796050665376000"];
  const exact = ["1796050665374788", "1796050665375123", "1796050665376456"];
  const paths = (ours: string[], theirs: string[], op: string, txIds: [string, string]) => [
    ...new Set(
      compareOutputs(ours.map((t) => record(op, t, txIds[0])), theirs.map((t) => record(op, t, txIds[1])))
        .map((d) => d.path),
    ),
  ];
  assert.deepEqual(paths(exact, exact.toReversed(), "r", ["7", "8"]), []);
  assert.deepEqual(paths(exact, exact, "r", ["null", "8"]), ["value.payload.source.txId"]);
  assert.deepEqual(paths(times, exact, "r", ["8", "8"]), ["value.payload.ts_us(precision)"]);
  assert.deepEqual(paths(exact, exact.toReversed(), "u", ["8", "8"]), ["value.payload.source.ts_us"]);
});

Deno.test("docs/CAPTURE.md's list of differences is read from its subsection, * matching any characters, values optional", () => {
  const readme = "## Change capture\n\n### Differences from Debezium\n\nIntro.\n\n" +
    "- `value.payload.source.version`: ours.\n- `value.schema.fields[after].*.optional`: why.\n" +
    "- `value.payload.after.*: ours=-735160 debezium=-703383`: values.\n\n## Next\n- `key`: no\n";
  const known = knownDifferences(readme);
  assert.deepEqual(known.map((k) => k.pattern), [
    "value.payload.source.version",
    "value.schema.fields[after].*.optional",
    "value.payload.after.*: ours=-735160 debezium=-703383",
  ]);
  const at = (path: string, ours = "1", debezium = "2") => ({ topic: "t", key: "k", index: 0, path, ours, debezium });
  assert.ok(known[1].matches(at("value.schema.fields[after].fields[name].optional")));
  assert.ok(!known[1].matches(at("value.schema.fields[before].fields[name].optional")));
  assert.ok(known[2].matches(at("value.payload.after.dob", "-735160", "-703383")));
  assert.ok(!known[2].matches(at("value.payload.after.dob", "-735161", "-703383")));
  assert.ok(!known.some((k) => k.matches(at("key"))));
  assert.throws(() => knownDifferences("# no list"), /no "### Differences from Debezium" subsection/);
});
