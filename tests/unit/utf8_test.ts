import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { utf8Length } from "../../lib/utf8.ts";

Deno.test("utf8Length counts UTF-8 bytes of ASCII, multi-byte, surrogate-pair and long texts as Buffer does", () => {
  for (const text of ["", "abc", "é", "€", "😀", "ключ é€😀", "x".repeat(70_000), "é".repeat(70_000)]) {
    assert.equal(utf8Length(text), Buffer.byteLength(text, "utf8"), `${text.slice(0, 10)} (${text.length} units)`);
  }
});
