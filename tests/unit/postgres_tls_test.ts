/**
 * PostgreSQL over TLS with a private CA, without services: libpq's `sslmode`, `sslrootcert`,
 * `sslcert` and `sslkey` in DATABASE_URL, mapped to postgres.js (lib/database.ts, databaseTls), and
 * the commands refusing a TLS file they cannot read.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../lib/config.ts";
import { connectDatabase, databaseTls } from "../../lib/database.ts";
import { pipelineNames, runCommand } from "../_helpers.ts";
import { oneLine } from "../_output.ts";

/** A directory with a CA, a client certificate and key, removed by `remove()`. */
async function pemFiles() {
  const dir = await Deno.makeTempDir({ prefix: "cdc-tls-unit-" });
  const files = { ca: `${dir}/ca.pem`, cert: `${dir}/client.crt`, key: `${dir}/client.key` };
  for (const [name, path] of Object.entries(files)) Deno.writeTextFileSync(path, `-----BEGIN ${name}-----\n`);
  return { dir, ...files, remove: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("libpq's sslrootcert, sslcert and sslkey become postgres.js ssl options with the files' contents, and leave the URL", async () => {
  const pem = await pemFiles();
  try {
    const base = "postgres://u:p@db.example:5432/app";
    const url = `${base}?sslmode=verify-full&sslrootcert=${pem.ca}&sslcert=${pem.cert}&sslkey=${pem.key}&x=1`;
    assert.deepEqual(databaseTls(url), {
      url: `${base}?x=1`,
      ssl: {
        ca: "-----BEGIN ca-----\n",
        cert: "-----BEGIN cert-----\n",
        key: "-----BEGIN key-----\n",
        rejectUnauthorized: true,
      },
    });
    // verify-ca checks the chain, not the host name; require with a CA is verify-ca, as in libpq.
    for (const mode of ["verify-ca", "require"]) {
      const { ssl } = databaseTls(`${base}?sslmode=${mode}&sslrootcert=${pem.ca}`);
      assert.ok(typeof ssl === "object" && ssl.rejectUnauthorized && ssl.ca, mode);
      assert.equal(typeof ssl.checkServerIdentity, "function", mode);
      assert.equal(ssl.checkServerIdentity!(), undefined, mode);
    }
    // A CA named without a mode is checked in full.
    assert.deepEqual(databaseTls(`${base}?sslrootcert=${pem.ca}`).ssl, {
      ca: "-----BEGIN ca-----\n",
      rejectUnauthorized: true,
    });
    // A client certificate alone, with require: encrypted and presented, the server not checked.
    assert.deepEqual(databaseTls(`${base}?sslmode=require&sslcert=${pem.cert}&sslkey=${pem.key}`).ssl, {
      cert: "-----BEGIN cert-----\n",
      key: "-----BEGIN key-----\n",
      rejectUnauthorized: false,
    });
    assert.deepEqual(databaseTls(`${base}?sslrootcert=system`).ssl, { rejectUnauthorized: true });
    assert.deepEqual(databaseTls(`${base}?sslmode=disable&sslrootcert=${pem.ca}`), { url: base, ssl: false });
    assert.deepEqual(databaseTls(`${base}?sslmode=require`), { url: base, ssl: "require" });
    assert.deepEqual(databaseTls(base), { url: base });
  } finally {
    await pem.remove();
  }
});

Deno.test("an unreadable TLS file, half a client certificate or an unknown sslmode is a one-line ConfigError", async () => {
  const pem = await pemFiles();
  try {
    const base = "postgres://u:Secret@db.example/app";
    const cases: [string, RegExp][] = [
      [`${base}?sslrootcert=${pem.dir}/missing.pem`, /^DATABASE_URL sslrootcert cannot be read: ".*missing\.pem": /],
      [`${base}?sslmode=verify-full&sslcert=${pem.cert}`, /^DATABASE_URL sslcert and sslkey go together/],
      [`${base}?sslmode=verify`, /^DATABASE_URL sslmode must be one of disable, .*verify-full: got "verify"$/],
    ];
    for (const [url, pattern] of cases) {
      assert.throws(() => connectDatabase(url, 1), (error: Error) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, pattern);
        assert.doesNotMatch(error.message, /\n|Secret/);
        return true;
      });
    }
  } finally {
    await pem.remove();
  }
});

Deno.test("a TLS file DATABASE_URL names that cannot be read: consume and capture exit 2 with one line, the password masked", async () => {
  const url = "postgres://u:Secret-9@localhost:5432/cdc_db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
  for (const [name, args] of [["consume", ["--idle-timeout", "1"]], ["produce", ["capture"]]] as const) {
    const result = await runCommand(name, [...args], { ...pipelineNames(url) });
    assert.equal(result.code, 2, `${name} ${args.join(" ")}: ${result.stderr}`);
    oneLine(result, /DATABASE_URL sslrootcert cannot be read: "\/nonexistent\/ca\.pem"/, `${name} ${args.join(" ")}`);
    assert.ok(!result.stderr.includes("Secret-9"), result.stderr);
  }
});
