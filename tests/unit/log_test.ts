/**
 * Unit tests of logging (lib/log.ts): both formats with an injected clock and writer, levels,
 * and secrets never reaching a line.
 * @module
 */
import assert from "node:assert/strict";
import { createLogger, type LoggerOptions, secretsOf } from "../../lib/log.ts";

const NOW = new Date("2025-07-03T10:11:12.345Z");

function capture(options: Partial<LoggerOptions> = {}) {
  const lines: string[] = [];
  const logger = createLogger({ component: "consumer", write: (line) => lines.push(line), now: () => NOW, ...options });
  return { lines, logger };
}

// ---- formats --------------------------------------------------------------------------------

Deno.test("human lines carry time, padded level, component, message and fields", () => {
  const { lines, logger } = capture();
  logger.info("applied batch", { topic: "users", partition: 2, offsets: [5, 9], ok: true });
  logger.warn("waiting");
  assert.deepEqual(lines, [
    "2025-07-03T10:11:12.345Z INFO  consumer: applied batch topic=users partition=2 offsets=[5,9] ok=true",
    "2025-07-03T10:11:12.345Z WARN  consumer: waiting",
  ]);
});

Deno.test("json lines are one JSON object each with ts, level, component, msg and the fields", () => {
  const { lines, logger } = capture({ format: "json" });
  logger.error("gave up", { attempts: 8, lag: 12n });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes("\n"));
  assert.deepEqual(JSON.parse(lines[0]), {
    ts: "2025-07-03T10:11:12.345Z",
    level: "error",
    component: "consumer",
    msg: "gave up",
    attempts: 8,
    lag: "12",
  });
});

Deno.test("bigint fields are written as decimal text in human lines too", () => {
  const { lines, logger } = capture();
  logger.info("offset", { offset: { at: 9007199254740993n } });
  assert.match(lines[0], /offset=\{"at":"9007199254740993"\}$/);
});

Deno.test("lines below the configured level are not written; the default level is info", () => {
  const def = capture();
  def.logger.debug("hidden");
  def.logger.info("shown");
  assert.deepEqual(def.lines.map((l) => l.split(" ").at(-1)), ["shown"]);

  const warn = capture({ level: "warn" });
  warn.logger.debug("d");
  warn.logger.info("i");
  warn.logger.warn("w");
  warn.logger.error("e");
  assert.equal(warn.lines.length, 2);
  assert.ok(warn.lines[0].endsWith(" WARN  consumer: w"), warn.lines[0]);
  assert.match(warn.lines[1], / ERROR consumer: e$/);

  const debug = capture({ level: "debug", format: "json" });
  debug.logger.debug("d");
  assert.equal(JSON.parse(debug.lines[0]).level, "debug");
});

Deno.test("each line uses the injected clock at the time it is written", () => {
  let t = 0;
  const { lines, logger } = capture({ now: () => new Date(t) });
  logger.info("a");
  t = 1000;
  logger.info("b");
  assert.ok(lines[0].startsWith("1970-01-01T00:00:00.000Z "));
  assert.ok(lines[1].startsWith("1970-01-01T00:00:01.000Z "));
});

// ---- secrets --------------------------------------------------------------------------------

const SECRET = "s3cret-P4ss";

function logEverywhere(format: "human" | "json", secrets: string[]): string[] {
  const { lines, logger } = capture({ format, secrets });
  logger.info(`connecting to postgres://app:${SECRET}@db:5432/x`);
  logger.warn("retrying", { url: `postgres://app:${SECRET}@db/x`, password: SECRET });
  logger.error("nested", { config: { sasl: { password: SECRET }, list: [SECRET, `x${SECRET}x`] } });
  logger.info(`${SECRET}${SECRET}`, { [`key-${SECRET}`]: 1 });
  return lines;
}

Deno.test("a secret never appears in human lines, in the message or in any field", () => {
  const lines = logEverywhere("human", [SECRET]);
  assert.equal(lines.length, 4);
  for (const line of lines) {
    assert.ok(!line.includes(SECRET), line);
    assert.ok(line.includes("***"), line);
  }
  assert.match(lines[0], /postgres:\/\/app:\*\*\*@db:5432\/x$/);
});

Deno.test("a secret never appears in json lines, in the message or in any field or key", () => {
  const lines = logEverywhere("json", [SECRET]);
  assert.equal(lines.length, 4);
  for (const line of lines) {
    assert.ok(!line.includes(SECRET), line);
    JSON.parse(line); // masking keeps the line valid JSON
  }
  assert.equal(JSON.parse(lines[1]).password, "***");
  assert.equal(JSON.parse(lines[3]).msg, "******");
});

Deno.test("every secret given is masked, not only the first", () => {
  const { lines, logger } = capture({ secrets: ["db-password-1", "sasl-password-2"] });
  logger.info("both db-password-1 and sasl-password-2");
  assert.equal(lines[0].endsWith("both *** and ***"), true, lines[0]);
});

Deno.test("a logger without secrets writes messages unchanged", () => {
  const { lines, logger } = capture({ secrets: [] });
  logger.info("postgres://app@db/x?sslmode=require");
  assert.ok(lines[0].endsWith("postgres://app@db/x?sslmode=require"));
});

Deno.test("a logger masks the password of any URL and any password= value, even of secrets it was not given", () => {
  const { lines, logger } = capture({ secrets: [] });
  logger.error("failed: TypeError: Invalid URL: 'postgres://app:pw9@db:99999/x'", { url: "postgres://u:p%40ss@h/d" });
  logger.error("connect failed: host=db password=hunter22 user=app");
  assert.ok(lines[0].includes("postgres://app:***@db:99999/x") && lines[0].includes("postgres://u:***@h/d"), lines[0]);
  assert.ok(!/pw9|p%40ss|hunter22/.test(lines.join("\n")), lines.join("\n"));
});

// ---- secretsOf ------------------------------------------------------------------------------

Deno.test("secretsOf extracts the database password from the URL, decoded and as the URL spells it", () => {
  assert.deepEqual(secretsOf({ databaseUrl: "postgres://postgres:postgres@localhost:5432/cdc_db" }), ["postgres"]);
  assert.deepEqual(
    secretsOf({ databaseUrl: "postgresql://app:p%40ss%2Fw0rd@db:6543/x?sslmode=require" }).sort(),
    ["p%2540ss%252Fw0rd", "p%40ss%2Fw0rd", "p@ss/w0rd"],
  );
});

Deno.test("secretsOf finds the password of a URL that does not parse, and of a password= parameter", () => {
  assert.deepEqual(secretsOf({ databaseUrl: "postgres://user:Secret@localhost:99999/db" }), ["Secret"]);
  assert.deepEqual(secretsOf({ databaseUrl: "postgres://user:S3c r@t@[bad/db" }).sort(), [
    "S3c r@t",
    "S3c%20r%40t",
  ]);
  assert.deepEqual(secretsOf({ databaseUrl: "postgres://db/x?user=u&password=pw%21" }).sort(), [
    "pw!",
    "pw%21",
    "pw%2521",
  ]);
});

Deno.test("secretsOf extracts the SASL password too", () => {
  const secrets = secretsOf({
    databaseUrl: "postgres://app:dbpass@db/x",
    kafkaSasl: { password: "kafka-pass" },
  });
  assert.deepEqual(secrets.sort(), ["dbpass", "kafka-pass"]);
});

Deno.test("secretsOf returns nothing for a URL without a password or an unparsable URL", () => {
  assert.deepEqual(secretsOf({ databaseUrl: "postgres://app@db/x" }), []);
  assert.deepEqual(secretsOf({ databaseUrl: "postgres://db/x", kafkaSasl: { password: "" } }), []);
  assert.deepEqual(secretsOf({ databaseUrl: "::not a url::" }), []);
});

Deno.test("the secrets of a configuration are masked by a logger built with them", () => {
  const config = { databaseUrl: "postgres://app:hunter22@db/x", kafkaSasl: { password: "kafka-pass" } };
  const { lines, logger } = capture({ secrets: secretsOf(config), format: "json" });
  logger.info("config", { databaseUrl: config.databaseUrl, sasl: config.kafkaSasl });
  assert.ok(!lines[0].includes("hunter22") && !lines[0].includes("kafka-pass"), lines[0]);
});

Deno.test({
  name: "a secret with quotes or backslashes is masked in json lines, not written JSON-escaped",
  fn: () => {
    const secret = 'pa"ss\\word';
    const { lines, logger } = capture({ format: "json", secrets: [secret] });
    logger.info(`login ${secret}`, { password: secret });
    const parsed = JSON.parse(lines[0]);
    assert.ok(!parsed.msg.includes(secret), parsed.msg);
    assert.ok(!String(parsed.password).includes(secret), parsed.password);
  },
});

Deno.test({
  name: "a secret with quotes inside an object field is masked in human lines",
  fn: () => {
    const secret = 'pa"ss';
    const { lines, logger } = capture({ secrets: [secret] });
    logger.info("config", { sasl: { password: secret } });
    assert.ok(!lines[0].includes('pa\\"ss'), lines[0]);
  },
});

Deno.test({
  name: "a database password with reserved characters is masked in its URL-encoded form too",
  fn: () => {
    const url = "postgres://app:p%40ss%2Fw0rd@db/x";
    const { lines, logger } = capture({ secrets: secretsOf({ databaseUrl: url }) });
    logger.info("connecting", { url });
    assert.ok(!lines[0].includes("p%40ss%2Fw0rd"), lines[0]);
  },
});
