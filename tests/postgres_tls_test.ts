/**
 * PostgreSQL over TLS with a private CA, against a throwaway PostgreSQL of this test's own that
 * accepts TLS connections only, with certificates of a CA the test makes with openssl: libpq's
 * `sslmode`, `sslrootcert`, `sslcert` and `sslkey` in DATABASE_URL, as postgres.js uses them.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { connectDatabase } from "../lib/database.ts";
import {
  diffTables,
  freePort,
  pipelineNames,
  produceWorkload,
  readTables,
  referenceState,
  runCommand,
  runProgram,
  seededEvents,
} from "./_helpers.ts";
import { oneLine } from "./_output.ts";

/** Debian's PostgreSQL binaries, the newest version installed (scripts/services.sh installs them). */
const PG_BIN = (() => {
  try {
    return [...Deno.readDirSync("/usr/lib/postgresql")]
      .map((entry) => `/usr/lib/postgresql/${entry.name}/bin`)
      .filter((bin) => {
        try {
          return Deno.statSync(`${bin}/initdb`).isFile;
        } catch {
          return false;
        }
      })
      .sort().at(-1);
  } catch {
    return undefined;
  }
})();
const AS_ROOT = Deno.uid() === 0;

/** Runs `cmd`; as root, a server command runs as user postgres (initdb refuses root), as scripts/services.sh does. */
async function run(cmd: string, args: string[], options: { cwd?: string; asServer?: boolean } = {}): Promise<void> {
  const [program, argv] = options.asServer && AS_ROOT
    ? ["runuser", ["-u", "postgres", "--", cmd, ...args]]
    : [cmd, args];
  const output = await runProgram(program, argv, { cwd: options.cwd });
  if (output.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${output.stderr.trim()}`);
}

/** Makes `<name>.key` and `<name>.crt` in `dir` for `subject`, signed by the CA `ca` (self-signed when absent). */
async function certificate(dir: string, name: string, subject: string, ca?: string, altNames?: string): Promise<void> {
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`];
  if (!ca) {
    await run("openssl", ["req", "-x509", ...key, "-out", `${name}.crt`, "-days", "2", "-subj", subject], { cwd: dir });
    return;
  }
  await run("openssl", ["req", ...key, "-out", `${name}.csr`, "-subj", subject], { cwd: dir });
  const extensions = altNames ? ["-extfile", `${name}.ext`] : [];
  if (altNames) Deno.writeTextFileSync(`${dir}/${name}.ext`, `subjectAltName=${altNames}\n`);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    ...extensions,
  ], { cwd: dir });
}

/**
 * A PostgreSQL of this test's own on a free port, TLS only: user `cdc_cert` logs in with a client
 * certificate of the private CA (hba `cert`), user `cdc_pw` with a password; each owns a database.
 */
async function tlsPostgres() {
  const dir = await Deno.makeTempDir({ prefix: "cdc-pg-tls-" });
  const postgresUid = AS_ROOT ? Number((await runProgram("id", ["-u", "postgres"])).stdout) : undefined;
  const own = (path: string) => postgresUid !== undefined && Deno.chownSync(path, postgresUid, postgresUid);
  await certificate(dir, "ca", "/CN=cdc-pipeline test CA");
  await certificate(dir, "server", "/CN=localhost", "ca", "DNS:localhost,IP:127.0.0.1,IP:::1");
  await certificate(dir, "client", "/CN=cdc_cert", "ca");
  await certificate(dir, "wrong-ca", "/CN=another CA");
  Deno.chmodSync(`${dir}/server.key`, 0o600);
  for (const name of [".", "server.key", "server.crt", "ca.crt"]) own(`${dir}/${name}`);
  const password = `Pw-${crypto.randomUUID().slice(0, 8)}`;
  Deno.writeTextFileSync(`${dir}/pwfile`, "postgres\n");
  own(`${dir}/pwfile`);
  await run(`${PG_BIN}/initdb`, ["-D", `${dir}/data`, "-U", "postgres", `--pwfile=${dir}/pwfile`, "-E", "UTF8"], {
    asServer: true,
  });
  const port = freePort();
  Deno.writeTextFileSync(
    `${dir}/data/postgresql.conf`,
    [
      `port = ${port}`,
      "listen_addresses = 'localhost'",
      `unix_socket_directories = '${dir}'`,
      "ssl = on",
      `ssl_cert_file = '${dir}/server.crt'`,
      `ssl_key_file = '${dir}/server.key'`,
      `ssl_ca_file = '${dir}/ca.crt'`,
      "fsync = off",
      "shared_buffers = 16MB",
      "max_connections = 40",
      "",
    ].join("\n"),
    { append: true },
  );
  Deno.writeTextFileSync(
    `${dir}/data/pg_hba.conf`,
    [
      "local all all trust",
      "hostssl all cdc_cert 127.0.0.1/32 cert",
      "hostssl all cdc_cert ::1/128 cert",
      "hostssl all all 127.0.0.1/32 scram-sha-256",
      "hostssl all all ::1/128 scram-sha-256",
      "",
    ].join("\n"),
  );
  const stop = async () => {
    await run(`${PG_BIN}/pg_ctl`, ["-D", `${dir}/data`, "-m", "immediate", "-w", "stop"], { asServer: true })
      .catch(() => {});
    await Deno.remove(dir, { recursive: true });
  };
  try {
    await run(`${PG_BIN}/pg_ctl`, ["-D", `${dir}/data`, "-l", `${dir}/postgres.log`, "-w", "-t", "60", "start"], {
      asServer: true,
    });
    const admin = postgres({ host: dir, port, user: "postgres", database: "postgres", max: 1, onnotice: () => {} });
    await admin.unsafe("create role cdc_cert login");
    await admin.unsafe(`create role cdc_pw login password '${password}'`);
    await admin.unsafe("create database db_cert owner cdc_cert");
    await admin.unsafe("create database db_pw owner cdc_pw");
    await admin.end();
  } catch (error) {
    const log = await Deno.readTextFile(`${dir}/postgres.log`).catch(() => "");
    await stop();
    throw new Error(`${error}\n${log.slice(-2000)}`);
  }
  const tls = (extra: string) => `sslmode=verify-full&sslrootcert=${dir}/ca.crt${extra}`;
  return {
    port,
    password,
    certUrl: `postgres://cdc_cert@localhost:${port}/db_cert?${
      tls(`&sslcert=${dir}/client.crt&sslkey=${dir}/client.key`)
    }`,
    passwordUrl: `postgres://cdc_pw:${password}@localhost:${port}/db_pw?${tls("")}`,
    wrongCaUrl:
      `postgres://cdc_pw:${password}@localhost:${port}/db_pw?sslmode=verify-full&sslrootcert=${dir}/wrong-ca.crt`,
    stop,
  };
}
Deno.test({
  name:
    "over TLS with a private CA the consumer applies a seeded workload with a client certificate and with a password; a wrong CA fails with one line",
  ignore: PG_BIN === undefined,
  fn: async (t) => {
    const server = await tlsPostgres();
    try {
      const { userEvents, orderEvents } = seededEvents(9, 200, 400);
      const expected = referenceState(userEvents, orderEvents);
      for (
        const [what, url] of [["client certificate", server.certUrl], ["password", server.passwordUrl]] as const
      ) {
        await t.step(`with a ${what}: the tables equal the reference and the session is TLS`, async () => {
          const env = pipelineNames(url);
          await produceWorkload(env, { users: 200, orders: 400, seed: 9 });
          const consumed = await runCommand("consume", ["--idle-timeout", "2"], env);
          assert.equal(consumed.code, 0, consumed.stderr);
          assert.ok(!consumed.stderr.includes(server.password), "the password is not logged");
          const sql = connectDatabase(url, 1) as unknown as postgres.Sql;
          try {
            assert.deepEqual(diffTables(expected, await readTables(sql)), []);
            const [session] = await sql<{ ssl: boolean; client_dn: string | null }[]>`
              select ssl, client_dn from pg_stat_ssl where pid = pg_backend_pid()`;
            assert.equal(session.ssl, true);
            assert.equal(session.client_dn, what === "password" ? null : "/CN=cdc_cert");
          } finally {
            await sql.end();
          }
        });
      }

      await t.step(
        "a CA that did not sign the server's certificate: consume exits with one line naming it",
        async () => {
          const env = pipelineNames(server.wrongCaUrl);
          const started = performance.now();
          const result = await runCommand("consume", ["--idle-timeout", "2"], env);
          const line = oneLine(result, /certificate is not trusted: check the CA file/, "consume with the wrong CA");
          assert.ok(!result.stderr.includes(server.password), result.stderr);
          assert.ok(performance.now() - started < 30_000, "it fails at once, not after waiting");
          console.log(`    wrong CA: exit ${result.code}: ${line}`);
        },
      );

      await t.step("without TLS the server refuses: the URLs above did use it", async () => {
        const plain = postgres(`postgres://cdc_pw:${server.password}@localhost:${server.port}/db_pw`, {
          max: 1,
          onnotice: () => {},
          connect_timeout: 5,
        });
        await assert.rejects(plain`select 1`, /no pg_hba.conf entry|SSL off/);
        await plain.end();
      });
    } finally {
      await server.stop();
    }
  },
});
