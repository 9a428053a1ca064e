/**
 * Writes the settings table of lib/config.ts (settingsTable) into README.md between its
 * `settings:begin` and `settings:end` markers; tests/unit/readme_settings_test.ts checks they match.
 * Run: deno task readme:settings
 * @module
 */
import { settingsTable } from "../lib/config.ts";

const README = new URL("../README.md", import.meta.url);
const BEGIN = "<!-- settings:begin (scripts/settings_table.ts writes this table from lib/config.ts) -->";
const END = "<!-- settings:end -->";

const text = Deno.readTextFileSync(README);
const from = text.indexOf(BEGIN);
const to = text.indexOf(END);
if (from < 0 || to < from) throw new Error(`README.md has no ${BEGIN} ... ${END} block: add the two markers first`);
Deno.writeTextFileSync(README, `${text.slice(0, from + BEGIN.length)}\n\n${settingsTable()}\n\n${text.slice(to)}`);
