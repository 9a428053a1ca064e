/** The services' setup as the project describes it, checked without them: compose.yaml and services.sh. */
import assert from "node:assert/strict";
import { DEFAULTS } from "../../lib/config.ts";
import { ROOT, runServices, uniqueName } from "../_helpers.ts";

Deno.test("compose.yaml offers the services on the ports and credentials of the config defaults", async () => {
  const compose = await Deno.readTextFile(`${ROOT}compose.yaml`);
  const pom = await Deno.readTextFile(`${ROOT}scripts/kafka/pom.xml`);
  const kafkaVersion = /<kafka.version>(.+)<\/kafka.version>/.exec(pom)![1];
  const url = new URL(DEFAULTS.databaseUrl);
  const [, kafkaPort] = DEFAULTS.brokers.split(":");
  assert.match(compose, new RegExp(`image: apache/kafka:${kafkaVersion.replaceAll(".", "\\.")}\\n`));
  assert.match(compose, new RegExp(`- "${kafkaPort}:${kafkaPort}"`));
  const saslPort = Number(kafkaPort) + 2;
  assert.match(compose, new RegExp(`- "${saslPort}:${saslPort}"`));
  assert.match(
    compose,
    new RegExp(
      `KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://localhost:${kafkaPort},SASL_PLAINTEXT://localhost:${saslPort}\\n`,
    ),
  );
  assert.match(compose, new RegExp(`- "${url.port}:5432"`));
  assert.match(compose, new RegExp(`POSTGRES_USER: ${url.username}\\n`));
  assert.match(compose, new RegExp(`POSTGRES_PASSWORD: ${url.password}\\n`));
  assert.match(compose, new RegExp(`POSTGRES_DB: ${url.pathname.slice(1)}\\n`));
  assert.match(compose, /wal_level=logical/);
  assert.match(compose, /KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"/);
  const services = await Deno.readTextFile(`${ROOT}scripts/services.sh`);
  assert.match(services, new RegExp(`KAFKA_PORT="\\$\\{KAFKA_PORT:-${kafkaPort}\\}"`));
  assert.match(services, new RegExp(`PG_PORT="\\$\\{PG_PORT:-${url.port}\\}"`));
  assert.match(services, new RegExp(`PG_DB="\\$\\{PG_DB:-${url.pathname.slice(1)}\\}"`));
  // The same SASL dev credential in both: PLAIN in the listener's JAAS, SCRAM added at start.
  const [, user, secret] =
    /KAFKA_SASL_USER="\$\{KAFKA_SASL_USER:-(\w+)\}"\nKAFKA_SASL_SECRET="\$\{KAFKA_SASL_SECRET:-([^}]+)\}"/
      .exec(services)!;
  assert.match(compose, new RegExp(`PlainLoginModule required user_${user}="${secret}";`));
  assert.match(compose, new RegExp(`--entity-name ${user} --add-config "\\$\\$m=\\[password=${secret}\\]"`));
  assert.match(compose, /SASL_ENABLED_MECHANISMS: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n/);
});

Deno.test("services up starts nothing for a Kafka and a PostgreSQL on another host, named by KAFKA_BROKERS and DATABASE_URL", async () => {
  const dataDir = `${ROOT}.data/${uniqueName("remote")}`;
  const run = await runServices(["up", "kafka", "postgres"], {
    KAFKA_BROKERS: "kafka-1.example.invalid:9092,kafka-2.example.invalid:9092",
    DATABASE_URL: "postgres://cdc:secret@db.example.invalid:5432/cdc_db?sslmode=require",
    // Empty, as when unset: a port given here would ask for a local service.
    KAFKA_PORT: "",
    PG_PORT: "",
    CDC_DATA_DIR: dataDir,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /using the Kafka on kafka-1\.example\.invalid that KAFKA_BROKERS names/);
  assert.match(run.stderr, /using the PostgreSQL on db\.example\.invalid that DATABASE_URL names/);
  assert.doesNotMatch(run.stderr, /starting|reusing|secret/);
  await assert.rejects(Deno.stat(dataDir), Deno.errors.NotFound);
});

Deno.test("a PG_VERSION other than 14 to 18 is refused in one line naming it, and each other major's npm build is pinned exactly", async () => {
  const dataDir = `${ROOT}.data/${uniqueName("pgversion")}`;
  const run = await runServices(["up", "postgres"], { PG_VERSION: "13", CDC_DATA_DIR: dataDir });
  assert.equal(run.code, 1, run.stderr);
  assert.equal(
    run.stderr.trim(),
    "services: error: PG_VERSION=13 is not a PostgreSQL major this script runs: use 14, 15, 16, 17 or 18",
  );
  await assert.rejects(Deno.stat(dataDir), Deno.errors.NotFound);
  const services = await Deno.readTextFile(`${ROOT}scripts/services.sh`);
  const builds = /declare -A PG_NPM_BUILDS=\((.*)\)/.exec(services)![1];
  const pinned = [...builds.matchAll(/\[(\d+)\]=(\S+)/g)].map(([, major, version]) => [major, version]);
  assert.deepEqual(pinned.map(([major]) => major), ["14", "16", "17", "18"]);
  for (const [major, version] of pinned) assert.match(version, new RegExp(`^${major}\\.\\d+\\.\\d+(-[a-z]+\\.\\d+)?$`));
});
