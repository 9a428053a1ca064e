/**
 * The Debezium PostgreSQL connector's configuration, one definition for the compatibility test
 * (tests/_debezium.ts) and the bench (scripts/bench_capture_peer.ts): pgoutput, its own slot
 * (dropped when the engine stops) and publication, JsonConverter with schemas, and Debezium's
 * defaults for everything else, so that what is compared is what Debezium users get.
 * @module
 */

/** Where the connector reads and what it names. */
export interface ConnectorOptions {
  /** The engine's connector name. */
  name: string;
  /** postgres://user:password@host:port/database of the captured database. */
  databaseUrl: string;
  /** Debezium's `topic.prefix`, the capture's topic prefix. */
  prefix: string;
  /** The connector's own replication slot. */
  slot: string;
  /** The connector's own publication. */
  publication: string;
  /** `schema.table` names, Debezium's `table.include.list`. */
  tables: string[];
  /** `initial` takes a snapshot first; `no_data` only streams. */
  snapshotMode: "initial" | "no_data";
  /** Further Debezium properties by their own names (`decimal.handling.mode`...), set after the ones above. */
  extra?: Record<string, string>;
}

/** The connector's properties file, as `java.util.Properties` reads it. */
export function connectorProperties(options: ConnectorOptions): string {
  const url = new URL(options.databaseUrl);
  const properties: Record<string, string> = {
    "name": options.name,
    "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
    // The slot is the position that matters here; the engine's own offsets need not outlive the run.
    "offset.storage": "org.apache.kafka.connect.storage.MemoryOffsetBackingStore",
    "database.hostname": url.hostname,
    "database.port": url.port || "5432",
    "database.user": decodeURIComponent(url.username),
    "database.password": decodeURIComponent(url.password),
    "database.dbname": url.pathname.slice(1),
    "topic.prefix": options.prefix,
    "plugin.name": "pgoutput",
    "slot.name": options.slot,
    "slot.drop.on.stop": "true",
    "publication.name": options.publication,
    "publication.autocreate.mode": "filtered",
    "table.include.list": options.tables.join(","),
    "snapshot.mode": options.snapshotMode,
    "converter.schemas.enable": "true",
    ...options.extra,
  };
  // java.util.Properties reads backslashes and leading blanks as escapes.
  const escape = (value: string) => value.replaceAll("\\", "\\\\").replace(/^\s/, (c) => `\\${c}`);
  return Object.entries(properties).map(([key, value]) => `${key}=${escape(value)}`).join("\n") + "\n";
}
