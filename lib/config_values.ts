/**
 * The rules of configuration values: each parser reads one setting's raw text (a flag's or an env
 * variable's) into its typed value or throws a one-line ConfigError naming where it came from, and
 * a database URL is shown in those lines (and in log lines) without its password. Which setting
 * uses which rule is lib/config.ts' table.
 * @module
 */
import { readFileSync } from "node:fs";
import { PipelineError } from "./errors.ts";

/** A configuration value that breaks its rule; the message names the flag, rule and value. */
export class ConfigError extends PipelineError {}

/**
 * A setting's rule: reads its raw value (the flag's, else the env variable's, else the table's
 * default; `undefined` when none is given) into its typed value, or throws a ConfigError whose line
 * starts with `from`, the flag and env variable it came from.
 */
export type Parser<T> = (raw: string | boolean | undefined, from: string) => T;

/** A configured table: `schema.table`. */
export interface TableName {
  schema: string;
  table: string;
}

/** A Kafka SASL mechanism. */
export type SaslMechanism = "plain" | "scram-sha-256" | "scram-sha-512";

/** Partitions of the capture topics the capture creates: `count` for every table but those `tables` names. */
export interface TopicPartitions {
  /** Partitions of a table that `tables` does not name. */
  count: number;
  /** The tables with a count of their own. */
  tables: (TableName & { partitions: number })[];
}

/** The partitions that `setting` gives the capture topic of `table`. */
export function partitionsOf(setting: TopicPartitions, table: TableName): number {
  return setting.tables.find((t) => sameTable(t, table))?.partitions ?? setting.count;
}

/** Whether `a` and `b` name the same table. */
function sameTable(a: TableName, b: TableName): boolean {
  return a.schema === b.schema && a.table === b.table;
}

/** The rule an integer setting breaks, in words: "a non-negative integer", "an integer in 1..256". */
function integerRule(min: number, max = Number.MAX_SAFE_INTEGER): string {
  if (max !== Number.MAX_SAFE_INTEGER) return `an integer in ${min}..${max}`;
  if (min === 0) return "a non-negative integer";
  if (min === 1) return "a positive integer";
  return `an integer >= ${min}`;
}

/** A value as an error line shows it: a number as it is, anything else quoted so spaces and emptiness show. */
function shownValue(text: string): string {
  return /^-?\d+(\.\d+)?$/.test(text) ? text : JSON.stringify(text);
}

/** A trimmed value that must not be empty. */
export function text(raw: string | boolean | undefined, from: string): string {
  const value = String(raw ?? "").trim();
  if (value === "") throw new ConfigError(`${from} must not be empty`);
  return value;
}

/** The value as given: a password may begin or end with spaces. */
export function verbatim(raw: string | boolean | undefined): string {
  return String(raw ?? "");
}

/** A boolean flag: set by its presence (or a true-ish env variable). */
export function present(raw: string | boolean | undefined): boolean {
  return raw === true;
}

/** `parse` for a setting that may be left unset, which then reads as `undefined`. */
export function optional<T>(parse: Parser<T>): Parser<T | undefined> {
  return (raw, from) => raw === undefined ? undefined : parse(raw, from);
}

/** A whole number in min..max. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> {
  return (raw, from) => {
    const text = String(raw ?? "").trim();
    const value = Number(text);
    if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(`${from} must be ${integerRule(min, max)}: ${shownValue(text)}`);
    }
    return value;
  };
}

/** One of `allowed`, in any case unless `rule` (the words of the error line) is given, which keeps it exact. */
export function choice<const T extends string>(allowed: readonly T[], rule?: string): Parser<T> {
  return (raw, from) => {
    const given = text(raw, from);
    const value = rule === undefined ? given.toLowerCase() : given;
    if (!(allowed as readonly string[]).includes(value)) {
      throw new ConfigError(`${from} must be ${rule ?? `one of ${allowed.join(", ")}`}: got ${JSON.stringify(value)}`);
    }
    return value as T;
  };
}

/** `true` or `false`, in any case. */
export function trueOrFalse(raw: string | boolean | undefined, from: string): boolean {
  return choice(["true", "false"])(raw, from) === "true";
}

/** A SASL mechanism, in any case. */
export function saslMechanism(raw: string | boolean | undefined, from: string): SaslMechanism {
  const m = String(raw).toLowerCase();
  if (m !== "plain" && m !== "scram-sha-256" && m !== "scram-sha-512") {
    throw new ConfigError(`${from} must be plain, scram-sha-256 or scram-sha-512: got ${JSON.stringify(m)}`);
  }
  return m;
}

/** Comma-separated host:port pairs, at least one. */
export function brokerList(raw: string | boolean | undefined, from: string): string[] {
  const list = text(raw, from);
  const brokers = list.split(",").map((b) => b.trim()).filter(Boolean);
  if (brokers.length === 0) {
    throw new ConfigError(`${from} must name at least one host:port: got ${JSON.stringify(list)}`);
  }
  for (const broker of brokers) {
    const port = Number(/^[^\s:/]+:(\d{1,5})$/.exec(broker)?.[1] ?? 0);
    if (port < 1 || port > 65_535) {
      throw new ConfigError(
        `${from} must be host:port[,host:port...] with a port in 1..65535: got ${JSON.stringify(broker)}`,
      );
    }
  }
  return brokers;
}

/**
 * A postgres:// URL that parses. The URL is checked here, where the error is one line with the
 * password masked, because every later parser (postgres.js, the capture) would throw it whole,
 * password included.
 */
export function databaseUrl(raw: string | boolean | undefined, from: string): string {
  const url = text(raw, from);
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new ConfigError(
      `${from} must start with postgres:// or postgresql://: got ${JSON.stringify(redactUrl(url))}`,
    );
  }
  try {
    new URL(url);
  } catch {
    throw new ConfigError(
      `${from} is not a valid URL (check the host, a port in 1..65535, and ` +
        `percent-encode special characters of the password): got ${JSON.stringify(redactUrl(url))}`,
    );
  }
  return url;
}

/** The PEM certificates in the file at the path given. */
export function caFile(raw: string | boolean | undefined, from: string): string {
  const path = text(raw, from);
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      `${from} cannot be read: ${JSON.stringify(path)}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ConfigError(`${from} must be a PEM file of certificates: got ${JSON.stringify(path)}`);
  }
  return pem;
}

/** A slot or publication name: it goes into replication commands, which take no parameters, so PostgreSQL's slot name rule holds. */
export function slotName(raw: string | boolean | undefined, from: string): string {
  const value = text(raw, from);
  if (!/^[a-z0-9_]{1,63}$/.test(value)) {
    throw new ConfigError(
      `${from} must be 1..63 lower-case letters, digits or underscores: got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** A Kafka topic name prefix. */
export function topicPrefix(raw: string | boolean | undefined, from: string): string {
  const value = text(raw, from);
  if (!/^[a-zA-Z0-9._-]{1,200}$/.test(value)) {
    throw new ConfigError(`${from} must be 1..200 of a-z A-Z 0-9 . _ -: got ${JSON.stringify(value)}`);
  }
  return value;
}

/** An identifier as written: `"..."` (kept as is, `""` for a quote) or a bare name of a-z A-Z 0-9 _. */
const IDENTIFIER = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z0-9_]+)`;

/** A quoted identifier unquoted; a bare one as it is. */
function unquote(identifier: string): string {
  return identifier.startsWith('"') ? identifier.slice(1, -1).replaceAll('""', '"') : identifier;
}

/** `schema.table` or a bare `table` (in `public`), either part quoted (`public."Order Items"`), or `undefined`. */
function tableName(item: string): TableName | undefined {
  const match = new RegExp(`^(?:(${IDENTIFIER})\\.)?(${IDENTIFIER})$`).exec(item);
  if (!match) return undefined;
  const name = { schema: match[1] === undefined ? "public" : unquote(match[1]), table: unquote(match[2]) };
  // PostgreSQL's NAMEDATALEN: an identifier of 64 bytes or more would be cut, naming another table.
  return [name.schema, name.table].every((part) => new TextEncoder().encode(part).length <= 63) ? name : undefined;
}

/** The non-empty items of a comma-separated list; a comma inside double quotes belongs to its item. */
function items(list: string): string[] {
  return (list.match(/(?:"(?:[^"]|"")*"|[^,"])+/g) ?? []).map((item) => item.trim()).filter((item) => item !== "");
}

/** Parses one `schema.table` (a bare name is in `public`, a quoted part as written). */
export function oneTable(raw: string | boolean | undefined, from: string): TableName {
  const value = text(raw, from);
  const table = tableName(value.trim());
  if (!table) {
    throw new ConfigError(
      `${from} must be a schema.table name, each part a-z A-Z 0-9 _ or double-quoted: got ${JSON.stringify(value)}`,
    );
  }
  return table;
}

/** Parses `schema.table,...` (a bare name is in `public`, a quoted part as written), each table once. */
export function tableList(raw: string | boolean | undefined, from: string): TableName[] {
  const list = text(raw, from);
  const tables = items(list).map((item) => {
    const table = tableName(item);
    if (!table) {
      throw new ConfigError(
        `${from} must list schema.table names, each part a-z A-Z 0-9 _ or double-quoted, comma-separated: got ${
          JSON.stringify(item)
        }`,
      );
    }
    return table;
  });
  if (!tables.length) throw new ConfigError(`${from} must name at least one table: got ${JSON.stringify(list)}`);
  return tables.filter((t, i) => tables.findIndex((u) => sameTable(u, t)) === i);
}

/**
 * Parses `count,schema.table:count,...`: one bare count for every table, then the tables whose
 * topic gets a count of its own, each once (Kafka Connect's topic.creation.default.partitions and
 * its per-group partitions, in one value).
 */
export function topicPartitions(raw: string | boolean | undefined, from: string): TopicPartitions {
  const list = text(raw, from);
  const count = integer(1, 10_000);
  const counts: number[] = [];
  const tables: TopicPartitions["tables"] = [];
  for (const item of items(list)) {
    const colon = item.lastIndexOf(":");
    if (colon < 0) {
      counts.push(count(item, from));
      continue;
    }
    const table = tableName(item.slice(0, colon).trim());
    if (!table) {
      throw new ConfigError(`${from} must be a count, then schema.table:count items: got ${JSON.stringify(item)}`);
    }
    if (tables.some((t) => sameTable(t, table))) {
      throw new ConfigError(`${from} names ${table.schema}.${table.table} twice: got ${JSON.stringify(list)}`);
    }
    tables.push({ ...table, partitions: count(item.slice(colon + 1), from) });
  }
  if (counts.length !== 1) {
    throw new ConfigError(
      `${from} must give one count for the tables it does not name (e.g. 3,public.orders:5): got ${
        JSON.stringify(list)
      }`,
    );
  }
  return { count: counts[0], tables };
}

/** An operation Debezium's `skipped.operations` may name: create, update, delete, truncate. */
export type SkippableOperation = "c" | "u" | "d" | "t";

/** Parses Debezium's `skipped.operations`: `none`, or a comma list of c, u, d and t. */
export function skippedOperations(raw: string | boolean | undefined, from: string): ReadonlySet<SkippableOperation> {
  const list = text(raw, from);
  if (list.toLowerCase() === "none") return new Set();
  const codes = list.split(",").map((code) => code.trim());
  const wrong = codes.find((code) => !["c", "u", "d", "t"].includes(code));
  if (wrong !== undefined) {
    throw new ConfigError(`${from} must be none or a comma list of c, u, d, t: got ${JSON.stringify(wrong)}`);
  }
  return new Set(codes as SkippableOperation[]);
}

/** A regular expression as Debezium's Predicates match one: the whole name, ignoring case. */
function wholeName(pattern: string, from: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, "i");
  } catch (error) {
    throw new ConfigError(`${from} holds an invalid regular expression ${JSON.stringify(pattern)}: ${error}`);
  }
}

/**
 * Parses a comma list of regular expressions (`\\,` for a comma inside one), each matching a whole
 * fully-qualified name ignoring case, as Debezium's `column.include.list` and `column.exclude.list`.
 */
export function regexList(raw: string | boolean | undefined, from: string): RegExp[] {
  const list = text(raw, from);
  return list.split(/(?<!\\),/).map((p) => p.trim().replaceAll("\\,", ",")).filter(Boolean).map((p) =>
    wholeName(p, from)
  );
}

/**
 * Parses Debezium's `message.key.columns`, `<table regex>:<column>,<column>;...`, into its column
 * patterns in order: each `<table regex>.<column>` matched against `schema.table.column`
 * (Key.CustomKeyMapper).
 */
export function messageKeyColumns(raw: string | boolean | undefined, from: string): RegExp[] {
  const list = text(raw, from);
  return list.split(";").filter((item) => item.trim() !== "").flatMap((item) => {
    const match = /^\s*([^:]+):([^:,]+(?:,[^:,]+)*)\s*$/.exec(item);
    if (!match) {
      throw new ConfigError(
        `${from} must be <fully-qualified table regex>:<column>,<column>;... items: got ${JSON.stringify(item)}`,
      );
    }
    return match[2].split(",").map((column) => wholeName(`${match[1].trim()}.${column.trim()}`, from));
  });
}

/** A replica identity `replica.identity.autoset.values` gives: `DEFAULT`, `FULL`, `NOTHING` or `INDEX <name>`. */
export interface IdentityRule {
  /** The tables it is for, matched against `schema.table`. */
  table: RegExp;
  /** The identity as ALTER TABLE ... REPLICA IDENTITY writes it. */
  identity: "DEFAULT" | "FULL" | "NOTHING" | "INDEX";
  /** The index of `INDEX <name>`. */
  index?: string;
}

/**
 * Parses Debezium's `replica.identity.autoset.values`, `<table regex>:<identity>,...` with
 * DEFAULT, FULL, NOTHING or INDEX <name> (ReplicaIdentityMapper); `none` sets no identity.
 */
export function identityRules(raw: string | boolean | undefined, from: string): IdentityRule[] {
  const list = text(raw, from);
  if (list.toLowerCase() === "none") return [];
  return list.split(",").map((item) => {
    const match = /^\s*([^\s:]+):(DEFAULT|INDEX (.\w*)|FULL|NOTHING)\s*$/i.exec(item);
    if (!match) {
      throw new ConfigError(
        `${from} must be <table regex>:<DEFAULT|FULL|NOTHING|INDEX name> items, comma-separated: got ${
          JSON.stringify(item)
        }`,
      );
    }
    const identity = match[2].split(" ")[0].toUpperCase() as IdentityRule["identity"];
    return { table: wholeName(match[1], from), identity, ...(match[3] ? { index: match[3] } : {}) };
  });
}

/** Hides the password of a URL (`postgres://user:***@host/db`, `?password=***`) so it can be shown. */
export function redactUrl(url: string): string {
  // Up to the last "@": a raw "@" in a password must not end the redaction early.
  return url.replace(/(\/\/[^:/@]*:)[^]*@(?=[^@]*$)/, "$1***@").replace(/([?&]password=)[^&#]*/gi, "$1***");
}

/** The host, port and database of a URL, without user or password, for log lines. */
export function databaseLocation(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`;
  } catch {
    return "(unparsable URL)";
  }
}
