/**
 * No function in lib/ is over 80 lines, the functions nested in it counted (the owner's rule). The
 * scan reads the indentation `deno fmt` leaves: a function or method ends at the first line back
 * at its own indentation that does not close it.
 */
import assert from "node:assert/strict";

const MAX_LINES = 80;

/** A top-level function or class member and its length in lines, header and closing line included. */
interface Measured {
  name: string;
  line: number;
  lines: number;
}

const TOP_LEVEL =
  /^(?:export\s+)?(?:default\s+)?(?:async\s+)?function\*?\s+([\w$]+)|^(?:export\s+)?(?:const|let)\s+([\w$]+)\b.*(?:=>|\bfunction\b)/;
const MEMBER =
  /^ {2}(?:(?:static|async|get|set|private|protected|public|readonly|override)\s+)*(#?[\w$]+)\s*(?:<[^>]*>)?(?:\(|\s*=.*=>)/;
const CLASS = /^(?:export\s+)?(?:default\s+)?(?:abstract\s+)?class\s/;

const indentOf = (line: string) => line.length - line.trimStart().length;

/**
 * The last line of the block that starts at `start` with indentation `indent`: the line that closes
 * it there (`}`, `);`; a `): T {` line goes on), or else the last line indented deeper.
 */
function blockEnd(lines: string[], start: number, indent: number): number {
  let end = start;
  for (let i = start + 1; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === "") continue;
    const closing = indentOf(line) === indent && /^[)}\]]/.test(line.trim());
    if (indentOf(line) > indent || (closing && /(?:[{([]|=>)$/.test(line.trimEnd()))) end = i;
    else if (closing) return i;
    else return end;
  }
  return end;
}

/** Every top-level function and class member of `source`, with its length. */
function measure(source: string): Measured[] {
  const lines = source.split("\n");
  const measured: Measured[] = [];
  let classEnd = -1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (CLASS.test(line)) {
      classEnd = blockEnd(lines, i, 0);
      continue;
    }
    const match = i < classEnd ? MEMBER.exec(line) : TOP_LEVEL.exec(line);
    if (!match) continue;
    const end = blockEnd(lines, i, i < classEnd ? 2 : 0);
    measured.push({ name: match[1] ?? match[2], line: i + 1, lines: end - i + 1 });
  }
  return measured;
}

Deno.test("the scan measures functions and methods from their header to their closing line, nested functions included", () => {
  const source = [
    "export function outer(a: number): () => number {",
    "  const inner = () => {",
    "    return a;",
    "  };",
    "  return inner;",
    "}",
    "",
    "class Box {",
    "  constructor(readonly size: number) {}",
    "  async #grow(",
    "    by: number,",
    "  ): Promise<void> {",
    "    await Promise.resolve(by);",
    "  }",
    "}",
    "const half = (n: number) =>",
    "  n / 2;",
    "export const LIMIT = 3;",
  ].join("\n");
  assert.deepEqual(measure(source).map((m) => [m.name, m.line, m.lines]), [
    ["outer", 1, 6],
    ["constructor", 9, 1],
    ["#grow", 10, 5],
    ["half", 16, 2],
  ]);
});

Deno.test(`no function in lib/ is over ${MAX_LINES} lines, counting the functions nested in it`, () => {
  const over: string[] = [];
  let files = 0;
  for (const entry of Deno.readDirSync(new URL("../../lib/", import.meta.url))) {
    if (!entry.name.endsWith(".ts")) continue;
    files++;
    const source = Deno.readTextFileSync(new URL(`../../lib/${entry.name}`, import.meta.url));
    for (const m of measure(source)) {
      if (m.lines > MAX_LINES) over.push(`lib/${entry.name}:${m.line} ${m.name}: ${m.lines} lines`);
    }
  }
  assert.ok(files > 10, `read ${files} files of lib/`);
  assert.deepEqual(over, []);
});
