/**
 * The README's settings table is the one lib/config.ts renders from its table of settings
 * (scripts/settings_table.ts writes it).
 * @module
 */
import assert from "node:assert/strict";
import { settingsTable } from "../../lib/config.ts";

/** The table's rows as trimmed cells, so column padding (deno fmt's) does not count. */
function cells(table: string): string[][] {
  return table.split("\n").filter((line) => line.startsWith("|")).map((line) =>
    line.slice(1, -1).split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/^-+$/, "---"))
  );
}

Deno.test("the README's settings table matches lib/config.ts' settings, row for row", () => {
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const block = /<!-- settings:begin[^>]*-->([^]*?)<!-- settings:end -->/.exec(readme);
  assert.ok(block, "README.md has its settings:begin and settings:end markers");
  assert.deepEqual(
    cells(block[1]),
    cells(settingsTable()),
    "README.md is stale: run deno task readme:settings",
  );
});
