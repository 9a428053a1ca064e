/**
 * Security settings without services: the TLS and SASL options both clients receive, refused
 * settings as one line, and an unparsable DATABASE_URL refused by every command that reads it with no password
 * in any spelling.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { ConfigError, loadConsumeConfig, loadProduceConfig } from "../../lib/config.ts";
import { redactUrl } from "../../lib/config_values.ts";
import { kafkaSecurityOptions } from "../../lib/kafka_admin.ts";
import { connectDatabase } from "../../lib/database.ts";
import { BROKERS, ROOT, runCommand } from "../_helpers.ts";
import { assertNoSecrets } from "../_output.ts";

const CA_FILE = `${ROOT}tests/fixtures/tls/ca.pem`;

// ---- option mapping (no services) -----------------------------------------------------------

Deno.test("Kafka TLS is off by default, on with --kafka-tls, and trusts only the given CA with a CA file", () => {
  const load = (args: string[], env: Record<string, string> = {}) => {
    const parsed = loadProduceConfig(args, env);
    assert.ok(!parsed.help);
    return parsed.config;
  };
  assert.deepEqual(kafkaSecurityOptions(load([])), { ssl: false });
  assert.deepEqual(kafkaSecurityOptions(load([], { KAFKA_TLS: "true" })), { ssl: true });
  const withCa = load([], { KAFKA_TLS_CA_FILE: CA_FILE });
  assert.equal(withCa.kafkaTls, true);
  assert.deepEqual(kafkaSecurityOptions(withCa), { ssl: { ca: [Deno.readTextFileSync(CA_FILE)] } });
  assert.deepEqual(
    kafkaSecurityOptions(
      load(["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "u"], { KAFKA_SASL_PASSWORD: "p" }),
    ),
    { ssl: false, sasl: { mechanism: "scram-sha-512", username: "u", password: "p" } },
  );
});

Deno.test("an unreadable or non-PEM CA file and half-given SASL credentials are one-line configuration errors", () => {
  const cases: [Record<string, string>, RegExp][] = [
    [
      { KAFKA_TLS_CA_FILE: `${ROOT}tests/fixtures/tls/missing.pem` },
      /KAFKA_TLS_CA_FILE\) cannot be read: ".*missing\.pem"/,
    ],
    [{ KAFKA_TLS_CA_FILE: `${ROOT}deno.json` }, /KAFKA_TLS_CA_FILE\) must be a PEM file of certificates/],
    [{ KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" }, /SASL credentials need --sasl-mechanism/],
    [{ KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_USERNAME: "u" }, /KAFKA_SASL_PASSWORD\) is required/],
  ];
  for (const [env, message] of cases) {
    assert.throws(() => loadConsumeConfig([], env), (error: Error) => {
      assert.ok(error instanceof ConfigError, `${JSON.stringify(env)}: ${error}`);
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /\n|"p"/);
      return true;
    });
  }
});

Deno.test("sslmode in DATABASE_URL reaches the PostgreSQL client and is not sent as a server setting", async () => {
  for (const [mode, ssl] of [["require", "require"], ["verify-full", "verify-full"], ["disable", false]] as const) {
    const sql = connectDatabase(`postgres://u:p@db.example:5432/app?sslmode=${mode}`, 1) as unknown as postgres.Sql;
    assert.equal(sql.options.ssl, ssl, mode);
    assert.equal((sql.options.connection as Record<string, unknown>).sslmode, undefined);
    await sql.end();
  }
});

// ---- unparsable settings, through the real commands --------------------------------------------

Deno.test("an unparsable DATABASE_URL: consume and capture, which read it, each exit 2 with one line and no password in any spelling", async () => {
  const urls: [string, string][] = [
    ["postgres://user:Secret@localhost:99999/db", "Secret"],
    ["postgres://user:S3cr%40t%2Fx@localhost:99999/db", "S3cr@t/x"],
    ["postgresql://app:p@ss w0rd@[::1/db?sslmode=require", "p@ss w0rd"],
    ["postgres://app@db:5432:5432/x?password=Hunter%2042", "Hunter 42"],
  ];
  const commands: ["produce" | "consume", string[]][] = [
    ["consume", ["--idle-timeout", "1"]],
    ["produce", ["capture"]],
  ];
  const runs = urls.flatMap(([url, secret]) =>
    commands.map(async ([name, args]) => {
      const what = `${[name, ...args].join(" ")} with ${JSON.stringify(redactUrl(url))}`;
      const result = await runCommand(name, args, { DATABASE_URL: url, KAFKA_BROKERS: BROKERS.join(",") });
      assert.equal(result.code, 2, `${what}: exit ${result.code}\n${result.stderr}`);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${what}: one line in\n${result.stderr}`);
      assert.match(lines[0], /DATABASE_URL\) (is not a valid URL|must)/, what);
      assertNoSecrets(result, [secret, encodeURIComponent(secret)], what);
      assert.ok(!/Secret|S3cr|p@ss|Hunter/.test(result.stderr), `${what}: ${result.stderr}`);
    })
  );
  await Promise.all(runs);
});
