/** The replication protocol decoder, on frames built byte by byte as PostgreSQL 15 sends them. */
import assert from "node:assert/strict";
import {
  decodeFrame,
  decodePgOutput,
  formatLsn,
  parseLsn,
  PG_EPOCH_OFFSET_US,
  ProtocolError,
  standbyStatusUpdate,
} from "../../lib/capture_pgoutput.ts";
import { Bytes } from "./_frames.ts";

Deno.test("an XLogData frame yields its WAL start, end, send time and payload", () => {
  const frame = new Bytes().char("w").int64(0x1_0000_0010n).int64(0x1_0000_0020n).int64(123n).char("B").done();
  const decoded = decodeFrame(frame);
  assert.equal(decoded.type, "xlog");
  if (decoded.type !== "xlog") return;
  assert.equal(decoded.walStart, 0x1_0000_0010n);
  assert.equal(decoded.walEnd, 0x1_0000_0020n);
  assert.equal(decoded.sendTime, 123n);
  assert.deepEqual([...decoded.data], ["B".charCodeAt(0)]);
});

Deno.test("a keepalive says whether the server wants a reply", () => {
  const asking = decodeFrame(new Bytes().char("k").int64(42n).int64(7n).int8(1).done());
  const quiet = decodeFrame(new Bytes().char("k").int64(42n).int64(7n).int8(0).done());
  assert.deepEqual(asking, { type: "keepalive", walEnd: 42n, sendTime: 7n, replyRequested: true });
  assert.equal(quiet.type === "keepalive" && quiet.replyRequested, false);
});

Deno.test("an unknown or truncated frame is a ProtocolError naming what is wrong", () => {
  assert.throws(() => decodeFrame(new Bytes().char("x").done()), /unknown type "x"/);
  assert.throws(() => decodeFrame(new Bytes().char("k").int32(1).done()), ProtocolError);
  assert.throws(() => decodePgOutput(new Bytes().char("Z").done()), /unknown tag "Z"/);
});

Deno.test("Begin and Commit give the xid, commit time and the commit's end LSN", () => {
  const begin = decodePgOutput(new Bytes().char("B").int64(0x500n).int64(1_000_000n).int32(0xfffffffe).done());
  assert.deepEqual(begin, { tag: "begin", finalLsn: 0x500n, commitTime: 1_000_000n, xid: 0xfffffffe });
  const commit = decodePgOutput(new Bytes().char("C").int8(0).int64(0x500n).int64(0x538n).int64(1_000_000n).done());
  assert.deepEqual(commit, { tag: "commit", commitLsn: 0x500n, endLsn: 0x538n, commitTime: 1_000_000n });
});

function relationMessage(): Uint8Array {
  return new Bytes().char("R").int32(16_390).cstring("public").cstring("users").char("f").int16(3)
    .int8(1).cstring("id").int32(2950).int32(-1)
    .int8(0).cstring("name").int32(1043).int32(54)
    .int8(0).cstring("is_deleted").int32(16).int32(-1)
    .done();
}

Deno.test("a Relation lists the columns with type OIDs, modifiers and key flags", () => {
  const message = decodePgOutput(relationMessage());
  assert.deepEqual(message, {
    tag: "relation",
    relation: {
      relationId: 16_390,
      schema: "public",
      table: "users",
      replicaIdentity: "f",
      columns: [
        { key: true, name: "id", typeOid: 2950, typeMod: -1 },
        { key: false, name: "name", typeOid: 1043, typeMod: 54 },
        { key: false, name: "is_deleted", typeOid: 16, typeMod: -1 },
      ],
    },
  });
});

Deno.test("Insert, Update (old row) and Delete decode text, NULL and unchanged-TOAST values", () => {
  const tuple = (b: Bytes, id: string, name: string | null, toast = false) => {
    b.int16(3).char("t").text(id);
    if (name === null) b.char("n");
    else b.char("t").text(name);
    return toast ? b.char("u") : b.char("t").text("f");
  };
  const insert = decodePgOutput(tuple(new Bytes().char("I").int32(16_390).char("N"), "a1", "Ann é").done());
  assert.deepEqual(insert, { tag: "insert", relationId: 16_390, after: ["a1", "Ann é", "f"] });

  const update = decodePgOutput(
    tuple(tuple(new Bytes().char("U").int32(16_390).char("O"), "a1", "Ann").char("N"), "a1", null, true).done(),
  );
  assert.deepEqual(update, {
    tag: "update",
    relationId: 16_390,
    before: ["a1", "Ann", "f"],
    keyOnly: false,
    after: ["a1", null, undefined],
  });

  const plainUpdate = decodePgOutput(tuple(new Bytes().char("U").int32(16_390).char("N"), "a1", "Bo").done());
  assert.equal(plainUpdate.tag === "update" && plainUpdate.before, null);

  const keyDelete = decodePgOutput(tuple(new Bytes().char("D").int32(16_390).char("K"), "a1", null).done());
  assert.deepEqual(keyDelete, { tag: "delete", relationId: 16_390, before: ["a1", null, "f"], keyOnly: true });
});

Deno.test("a logical decoding Message keeps its flag, LSN, prefix and content bytes (not necessarily UTF-8)", () => {
  const content = [0x7b, 0xff, 0x7d];
  const frame = new Bytes().char("M").int8(1).int64(0x1_0000_0010n).cstring("cdc-pipeline").int32(3).done();
  const message = decodePgOutput(new Uint8Array([...frame, ...content]));
  assert.deepEqual(message, {
    tag: "message",
    transactional: true,
    lsn: 0x1_0000_0010n,
    prefix: "cdc-pipeline",
    content: new Uint8Array(content),
  });
  const cut = new Bytes().char("M").int8(0).int64(1n).cstring("p").int32(9).char("x").done();
  assert.throws(() => decodePgOutput(cut), /truncated/);
});

Deno.test("Truncate lists its relations; Origin and Type are skipped", () => {
  const truncate = decodePgOutput(new Bytes().char("T").int32(2).int8(0).int32(1).int32(2).done());
  assert.deepEqual(truncate, { tag: "truncate", relationIds: [1, 2] });
  assert.deepEqual(decodePgOutput(new Bytes().char("O").int64(1n).cstring("x").done()), { tag: "skipped", kind: "O" });
});

Deno.test("a Standby Status Update carries the acknowledged LSN three times and the time since 2000", () => {
  const lsn = 0x16_B374_D848n;
  const nowUs = PG_EPOCH_OFFSET_US + 5_000_000n;
  const bytes = standbyStatusUpdate(lsn, nowUs);
  assert.equal(bytes.length, 34);
  assert.equal(String.fromCharCode(bytes[0]), "r");
  const view = new DataView(bytes.buffer);
  assert.equal(view.getBigUint64(1), lsn, "written");
  assert.equal(view.getBigUint64(9), lsn, "flushed");
  assert.equal(view.getBigUint64(17), lsn, "applied");
  assert.equal(view.getBigInt64(25), 5_000_000n);
  assert.equal(bytes[33], 0, "no reply requested");
});

Deno.test("LSN text round-trips as PostgreSQL writes it, and bad text is refused", () => {
  assert.equal(parseLsn("16/B374D848"), 0x16_B374_D848n);
  assert.equal(formatLsn(0x16_B374_D848n), "16/B374D848");
  assert.equal(formatLsn(parseLsn("0/0")), "0/0");
  assert.throws(() => parseLsn("16-B374D848"), /X\/Y/);
});
