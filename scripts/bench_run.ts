/**
 * One bench run: its sizes, the names of everything it creates (databases, topics, groups, the
 * capture's slot), the environment its commands run with, its progress lines, and the removal of
 * what it created.
 * @module
 */
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { DEFAULTS } from "../lib/config.ts";
import { dlqTopic } from "../lib/consumer_dead_letter.ts";
import type { BenchFlags } from "./bench_flags.ts";
import { cleanUpPeer } from "./bench_capture_peer.ts";
import { jdbcSinkNames } from "./bench_consumer_peer.ts";
import { databaseUrlFor, round, sleep } from "./_util.ts";

/** The environment of the pipeline's commands in one phase: its topics, group and database. */
export interface PipelineEnv extends Record<string, string> {
  USERS_TOPIC: string;
  ORDERS_TOPIC: string;
  CONSUMER_GROUP: string;
  DATABASE_URL: string;
  LOG_FORMAT: string;
}

/** A bench run, built once from the flags and the environment, handed to every phase. */
export interface BenchRun extends BenchFlags {
  /** The project's root folder, ending in `/`. */
  root: string;
  /** Prefix of every name the run creates; also its first database. */
  name: string;
  /** Users and orders among the events. */
  users: number;
  orders: number;
  /** Events the one-event-per-transaction baseline applies. */
  baselineEvents: number;
  /** The producer's seed, so that every phase sees the same stream shape. */
  seed: number;
  /** Events per producer send, the best measured on the 2-core reference machine. */
  produceBatch: number;
  /** Seconds a phase may take before the run gives up; generous for a noisy shared machine. */
  phaseTimeoutS: number;
  /** Seconds over which an idle consumer's CPU is measured. */
  idleWindowS: number;
  brokers: string[];
  /** PostgreSQL URL of the server's admin database; the run makes its own databases beside it. */
  adminUrl: string;
  kafka: Kafka;
  /** The Kafka release of the Java tools, as scripts/services.sh picks it. */
  kafkaVersion: string;
  /** The Deno commands' topics, group and database. */
  env: PipelineEnv;
  /** The standalone binaries': their own topics (filled by the binary producer), group and database. */
  binaryEnv: PipelineEnv;
  /** Kafka's Java producer's topic, and the baseline consumer's group. */
  javaTopic: string;
  baselineGroup: string;
  /** The capture phase's own database, consumer group, slot, publication and topics. */
  capture: { db: string; group: string; slot: string; publication: string; topics: string[] };
}

/** The run's names and sizes from `flags` and the environment (KAFKA_BROKERS, DATABASE_URL, KAFKA_VERSION). */
export async function createBenchRun(flags: BenchFlags, root: string): Promise<BenchRun> {
  const name = `bench_${Date.now().toString(36)}`;
  const brokers = (Deno.env.get("KAFKA_BROKERS") ?? DEFAULTS.brokers).split(",");
  const adminUrl = Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl;
  const users = Math.round(flags.events * 0.4);
  const env: PipelineEnv = {
    USERS_TOPIC: `${name}_users`,
    ORDERS_TOPIC: `${name}_orders`,
    CONSUMER_GROUP: `${name}_group`,
    DATABASE_URL: databaseUrlFor(adminUrl, name),
    LOG_FORMAT: "json",
  };
  return {
    ...flags,
    root,
    name,
    users,
    orders: flags.events - users,
    baselineEvents: Math.min(flags.events, flags.quick ? 2_000 : 10_000),
    seed: 1,
    produceBatch: 1_000,
    phaseTimeoutS: Math.max(120, flags.events / 2_000),
    idleWindowS: flags.quick ? 10 : 30,
    brokers,
    adminUrl,
    kafka: new Kafka({ clientId: "cdc-bench", brokers, logLevel: logLevel.NOTHING }),
    kafkaVersion: Deno.env.get("KAFKA_VERSION") ||
      /<kafka.version>(.+)<\/kafka.version>/.exec(await Deno.readTextFile(`${root}scripts/kafka/pom.xml`))![1],
    env,
    binaryEnv: {
      ...env,
      USERS_TOPIC: `${name}_binary_users`,
      ORDERS_TOPIC: `${name}_binary_orders`,
      CONSUMER_GROUP: `${name}_binary_group`,
      DATABASE_URL: databaseUrlFor(adminUrl, `${name}_binary`),
    },
    javaTopic: `${name}_java`,
    baselineGroup: `${name}_baseline`,
    capture: {
      db: `${name}_capture`,
      group: `${name}_capture_group`,
      slot: `${name}_slot`,
      publication: `${name}_pub`,
      topics: [`${name}.public.users`, `${name}.public.orders`],
    },
  };
}

/** A progress line on stderr. */
export function progress(line: string): void {
  console.error(`bench: ${line}`);
}

/** Runs one phase between two progress lines, the second with its duration. */
export async function timed<T>(phase: string, run: () => Promise<T>): Promise<T> {
  progress(`${phase}...`);
  const started = performance.now();
  const result = await run();
  progress(`${phase}: ${round((performance.now() - started) / 1000, 1)} s`);
  return result;
}

/** Removes everything the run created: databases, slots, topics (with DLQs) and consumer groups. */
export async function cleanUpRun(run: BenchRun): Promise<void> {
  await cleanUpPeer(run.adminUrl, run.brokers, run.name).catch((e) => progress(`removing the Debezium section: ${e}`));
  const admin = postgres(run.adminUrl, { max: 1, onnotice: () => {} });
  for (const db of [run.name, `${run.name}_binary`, jdbcSinkNames(run).db]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`).catch((e) => progress(`drop database: ${e}`));
  }
  // A database with a replication slot cannot be dropped: the slot goes first.
  await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${run.capture.slot}`
    .catch((e) => progress(`drop slot: ${e}`));
  await admin.unsafe(`drop database if exists ${run.capture.db} with (force)`)
    .catch((e) => progress(`drop database: ${e}`));
  await admin.end();
  await removeTopicsAndGroups(run);
}

/** The run's topics (with their DLQs) and consumer groups. */
async function removeTopicsAndGroups(run: BenchRun) {
  const { kafka, env, binaryEnv, javaTopic, baselineGroup, capture } = run;
  const kafkaAdmin = kafka.admin();
  try {
    await kafkaAdmin.connect();
    const existing = new Set(await kafkaAdmin.listTopics());
    const topics = [env.USERS_TOPIC, env.ORDERS_TOPIC, binaryEnv.USERS_TOPIC, binaryEnv.ORDERS_TOPIC]
      .flatMap((t) => [t, dlqTopic(t)]).concat(javaTopic, capture.topics)
      .filter((t) => existing.has(t));
    if (topics.length) await kafkaAdmin.deleteTopics({ topics });
    const ours = [env.CONSUMER_GROUP, binaryEnv.CONSUMER_GROUP, baselineGroup, capture.group, jdbcSinkNames(run).group];
    const groups = (await kafkaAdmin.listGroups()).groups.map((g) => g.groupId).filter((g) => ours.includes(g));
    // A group whose last member just left can still answer "not empty" for a while.
    for (const group of groups) {
      for (let attempt = 1;; attempt++) {
        try {
          await kafkaAdmin.deleteGroups([group]);
          break;
        } catch (error) {
          const why = (error as { groups?: { error?: { type?: string } }[] }).groups?.[0]?.error?.type;
          if (why === "GROUP_ID_NOT_FOUND") break;
          if (attempt === 15) throw new Error(`deleting group ${group}: ${why ?? error}`);
          await sleep(1000);
        }
      }
    }
  } catch (error) {
    progress(`removing topics and groups: ${error}`);
  } finally {
    await kafkaAdmin.disconnect().catch(() => {});
  }
}
