/**
 * The capture's footing in PostgreSQL: the captured tables, the publication, the slot and the
 * capture's own record that a slot's first snapshot reached Kafka (`cdc_capture_state`). That
 * record is also how a lost slot is told from a first start: a slot with a record that is now
 * missing was dropped under the capture, and starting over silently would lose the changes made
 * while there was none.
 * @module
 */
import {
  CaptureError,
  PublicationGapError,
  SlotInUseError,
  SlotInvalidatedError,
  SlotLostError,
} from "./capture_errors.ts";
import type { CaptureConfig, IdentityRule, TableName } from "./config.ts";
import type { Sql } from "./database.ts";

/** `schema.table`, as messages and flags write it. */
export function qualified(name: TableName): string {
  return `${name.schema}.${name.table}`;
}

/** The capture's bookkeeping: whether a slot's first snapshot reached Kafka. */
export async function ensureStateTable(sql: Sql): Promise<void> {
  // Two captures (two slots) starting at once on one database would race in CREATE TABLE IF NOT EXISTS (23505).
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext('cdc_capture_state'))`;
    await tx`
      create table if not exists cdc_capture_state (
        slot_name text primary key,
        snapshot_lsn pg_lsn not null,
        snapshot_done_at timestamptz not null default now()
      )`;
  });
}

/** The rule of `replica.identity.autoset.values` for `table`; more than one is a stop, as in ReplicaIdentityMapper. */
export function identityFor(rules: IdentityRule[], table: TableName): IdentityRule | undefined {
  const matched = rules.filter((rule) => rule.table.test(qualified(table)));
  if (matched.length > 1) {
    throw new CaptureError(
      `more than one item of replica.identity.autoset.values matches table ${qualified(table)}: keep one`,
    );
  }
  return matched[0];
}

/** pg_class.relreplident of each identity, with the index for INDEX. */
const IDENTITY_CODES = { DEFAULT: "d", NOTHING: "n", FULL: "f", INDEX: "i" } as const;

/**
 * Checks that every table exists and sets the REPLICA IDENTITY that `rules` (Debezium's
 * `replica.identity.autoset.values`) give it, only where it differs: ALTER TABLE locks the table
 * against writers, and a table no rule names keeps the identity its owner gave it. A table then
 * needs a primary key, a replica identity index or FULL: without, PostgreSQL sends no old key.
 */
export async function prepareTables(sql: Sql, tables: TableName[], rules: IdentityRule[] = []): Promise<void> {
  const rows = await sql<
    { schema: string; table: string; identity: string | null; index: string | null; has_key: boolean }[]
  >`
    select n.sch as schema, n.tbl as table, c.relreplident as identity,
           (select ic.relname from pg_index i join pg_class ic on ic.oid = i.indexrelid
            where i.indrelid = c.oid and i.indisreplident) as index,
           exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary) as has_key
    from unnest(${tables.map((t) => t.schema)}::text[], ${tables.map((t) => t.table)}::text[]) as n(sch, tbl)
    left join pg_namespace s on s.nspname = n.sch
    left join pg_class c on c.relnamespace = s.oid and c.relname = n.tbl and c.relkind in ('r', 'p')`;
  for (const row of rows) {
    const name = `${row.schema}.${row.table}`;
    if (row.identity === null) {
      throw new CaptureError(`table ${name} does not exist: create it or leave it out of --tables`);
    }
    const rule = identityFor(rules, row);
    if (
      rule &&
      (IDENTITY_CODES[rule.identity] !== row.identity ||
        (rule.index ?? null) !== (row.identity === "i" ? row.index : null))
    ) {
      await setIdentity(sql, row, rule);
      row.identity = IDENTITY_CODES[rule.identity];
    }
    if (!row.has_key && row.identity !== "f" && row.identity !== "i") {
      throw new CaptureError(
        `table ${name} has no primary key and its REPLICA IDENTITY is neither FULL nor an index: add a primary key, ` +
          `or run ALTER TABLE ${name} REPLICA IDENTITY FULL (or name it in --replica-identity-autoset-values)`,
      );
    }
  }
}

/** ALTER TABLE ... REPLICA IDENTITY as `rule` says. */
async function setIdentity(sql: Sql, table: TableName, rule: IdentityRule): Promise<void> {
  const target = sql`${sql(table.schema)}.${sql(table.table)}`;
  if (rule.identity === "INDEX") await sql`alter table ${target} replica identity using index ${sql(rule.index!)}`;
  // The keyword is one of three fixed words, never user data.
  else await sql`alter table ${target} replica identity ${sql.unsafe(rule.identity)}`;
}

/**
 * Configured tables the publication does not hold (all of them when it does not exist). A table is
 * held when it is listed, or it or a partitioned table above it is a member: pg_publication_tables
 * lists a partitioned table's partitions, not the table, unless publish_via_partition_root is set.
 */
export async function missingFromPublication(sql: Sql, publication: string, tables: TableName[]): Promise<TableName[]> {
  const missing = await sql<{ schema: string; table: string }[]>`
    select n.sch as schema, n.tbl as table
    from unnest(${tables.map((t) => t.schema)}::text[], ${tables.map((t) => t.table)}::text[])
      with ordinality as n(sch, tbl, position)
    where not exists (select 1 from pg_publication_tables t
                      where t.pubname = ${publication} and t.schemaname = n.sch and t.tablename = n.tbl)
      and not exists (select 1 from pg_publication p join pg_publication_rel r on r.prpubid = p.oid
                      where p.pubname = ${publication}
                        and r.prrelid in (select relid from pg_partition_ancestors(to_regclass(format('%I.%I', n.sch, n.tbl)))))
    order by n.position`;
  return missing.map(({ schema, table }) => ({ schema, table }));
}

/**
 * Makes the publication hold every configured table. Before a slot exists (`mayAdd`), missing
 * tables are added; with a slot, a missing table stops the run: the changes made while it was out
 * were decoded without it, so adding it back would leave that gap unseen. A partitioned table's
 * changes are published as the table's own (publish_via_partition_root), so they reach its topic.
 */
export async function ensurePublication(
  sql: Sql,
  publication: string,
  tables: TableName[],
  mayAdd: boolean,
  skipped: ReadonlySet<string> = new Set(["t"]),
) {
  const publish = publishOption(skipped);
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${publication}))`;
    const [found] = await tx<{ viaRoot: boolean; publish: string }[]>`
      select pubviaroot as "viaRoot",
             concat_ws(',', case when pubinsert then 'insert' end, case when pubupdate then 'update' end,
                       case when pubdelete then 'delete' end, case when pubtruncate then 'truncate' end) as publish
      from pg_publication where pubname = ${publication}`;
    // The option's words come from PUBLISHED_OPERATIONS, never from user data.
    const options = tx.unsafe(`publish = '${publish}'`);
    if (!found) await tx`create publication ${tx(publication)} with (publish_via_partition_root = true, ${options})`;
    else if (!found.viaRoot && await anyPartitioned(tx as unknown as Sql, tables)) {
      await tx`alter publication ${tx(publication)} set (publish_via_partition_root = true)`;
    }
    if (found && found.publish !== publish) await tx`alter publication ${tx(publication)} set (${options})`;
    const missing = await missingFromPublication(tx as unknown as Sql, publication, tables);
    if (missing.length && !mayAdd) throw new PublicationGapError(qualified(missing[0]), publication);
    for (const t of missing) await tx`alter publication ${tx(publication)} add table ${tx(t.schema)}.${tx(t.table)}`;
  });
}

/** The operations a publication publishes, by the code skipped.operations names them with. */
const PUBLISHED_OPERATIONS = [["c", "insert"], ["u", "update"], ["d", "delete"], ["t", "truncate"]] as const;

/**
 * The publication's `publish` option for `skipped` (skipped.operations): the operations not skipped,
 * as Debezium's publication leaves the skipped ones out (PostgresReplicationConnection.buildPublishOptionValue),
 * so that a transaction of skipped changes only is not sent at all and `source.sequence` names the same
 * commits. Debezium's default, `t` alone, publishes everything: truncates are dropped by the capture instead.
 */
export function publishOption(skipped: ReadonlySet<string>): string {
  const all = skipped.size === 1 && skipped.has("t");
  return PUBLISHED_OPERATIONS.filter(([code]) => all || !skipped.has(code)).map(([, word]) => word).join(",");
}

/** Whether any of `tables` is a partitioned table. */
async function anyPartitioned(sql: Sql, tables: TableName[]): Promise<boolean> {
  const [row] = await sql<{ any: boolean }[]>`
    select exists (
      select 1 from unnest(${tables.map((t) => t.schema)}::text[], ${tables.map((t) => t.table)}::text[]) as n(sch, tbl)
      join pg_namespace s on s.nspname = n.sch
      join pg_class c on c.relnamespace = s.oid and c.relname = n.tbl
      where c.relkind = 'p') as any`;
  return row.any;
}

/**
 * The configured table whose changes a relation's are: itself, or the nearest partitioned table
 * above it that is configured (a partition's changes decoded before publish_via_partition_root was
 * set come under its own name); null for neither.
 */
export async function configuredAncestor(sql: Sql, relationId: number, tables: TableName[]): Promise<TableName | null> {
  const rows = await sql<{ schema: string; table: string }[]>`
    select n.nspname as schema, c.relname as table
    from pg_partition_ancestors(${relationId}::oid::regclass) with ordinality as a(relid, depth)
    join pg_class c on c.oid = a.relid
    join pg_namespace n on n.oid = c.relnamespace
    order by a.depth`;
  return rows.map(({ schema, table }) => ({ schema, table })).find((r) =>
    tables.some((t) => qualified(t) === qualified(r))
  ) ??
    null;
}

/** What the capture knows of its slot: whether it exists, who holds it, its position, whether its snapshot is done. */
export interface SlotState {
  exists: boolean;
  activePid: number | null;
  confirmed: string | null;
  /** The slot's first snapshot reached Kafka (the state row exists, whether or not the slot does). */
  snapshotDone: boolean;
  /** Why PostgreSQL invalidated the slot (its invalidation_reason); null while the slot is usable. */
  invalidated: string | null;
}

/** Reads the slot's state and the capture's record of it. */
export async function slotState(sql: Sql, slot: string): Promise<SlotState> {
  // invalidation_reason is PostgreSQL 17's (read through to_jsonb, so older servers take the query too); before
  // it, wal_status 'lost' is the one invalidation a slot on a primary meets, which 17 calls wal_removed.
  const [row] = await sql<
    {
      exists: boolean;
      active_pid: number | null;
      confirmed: string | null;
      done: boolean;
      invalidated: string | null;
    }[]
  >`
    select s.slot_name is not null as exists, s.active_pid, s.confirmed_flush_lsn::text as confirmed,
           exists (select 1 from cdc_capture_state c where c.slot_name = ${slot}) as done,
           coalesce(to_jsonb(s) ->> 'invalidation_reason', case when s.wal_status = 'lost' then 'wal_removed' end)
             as invalidated
    from (select 1) one left join pg_replication_slots s on s.slot_name = ${slot}`;
  return {
    exists: row.exists,
    activePid: row.active_pid,
    confirmed: row.confirmed,
    snapshotDone: row.done,
    invalidated: row.invalidated,
  };
}

/** The server setting whose limit invalidates a slot, by invalidation_reason, for the ones an operator can raise. */
const INVALIDATING_SETTING: Record<string, string> = {
  wal_removed: "max_slot_wal_keep_size",
  idle_timeout: "idle_replication_slot_timeout",
};

/**
 * Stops the run when the slot whose first snapshot reached Kafka is missing (SlotLostError) or
 * invalidated by PostgreSQL (SlotInvalidatedError, naming the setting behind it with its value):
 * resuming, or a new slot made silently, would hide the changes it lost.
 */
export async function refuseLostSlot(sql: Sql, slot: string, state: SlotState): Promise<void> {
  if (!state.snapshotDone) return;
  if (!state.exists) throw new SlotLostError(slot);
  if (state.invalidated === null) return;
  const name = INVALIDATING_SETTING[state.invalidated];
  const [setting] = name ? await sql<{ value: string | null }[]>`select current_setting(${name}, true) as value` : [];
  const value = setting?.value;
  throw new SlotInvalidatedError(slot, state.invalidated, state.confirmed, value ? { name, value } : undefined);
}

/**
 * Decides how a replication session starts: `resume` from the slot, or `snapshot` with a new one
 * (`dropped` when an existing slot was dropped for it). A slot whose snapshot reached Kafka but
 * that is now missing or invalidated stops the run ({@linkcode refuseLostSlot}) unless
 * `newSnapshot` asks to start over; a slot held by another process is an outage (SlotInUseError).
 */
export async function decideStart(
  sql: Sql,
  slot: string,
  newSnapshot: boolean,
): Promise<{ start: "resume" } | { start: "snapshot"; dropped: boolean }> {
  const state = await slotState(sql, slot);
  if (state.activePid) throw new SlotInUseError(slot, state.activePid);
  if (!newSnapshot) await refuseLostSlot(sql, slot, state);
  if (state.exists && state.snapshotDone && !newSnapshot) return { start: "resume" };
  // A new snapshot on purpose, or a slot whose first snapshot never reached Kafka: start over.
  if (state.exists) await sql`select pg_drop_replication_slot(${slot})`;
  await sql`delete from cdc_capture_state where slot_name = ${slot}`;
  return { start: "snapshot", dropped: state.exists };
}

/** Records that the slot's first snapshot, read at `lsn`, reached Kafka. */
export async function recordSnapshotDone(sql: Sql, slot: string, lsn: string): Promise<void> {
  await sql`
    insert into cdc_capture_state (slot_name, snapshot_lsn) values (${slot}, ${lsn})
    on conflict (slot_name) do update set snapshot_lsn = excluded.snapshot_lsn, snapshot_done_at = now()`;
}

/** Reads the slot's WAL retention (current WAL position minus restart_lsn), in bytes. */
export async function retainedWal(sql: Sql, slot: string): Promise<number | null> {
  const [row] = await sql<{ bytes: number | null }[]>`
    select (pg_current_wal_lsn() - restart_lsn)::float8 as bytes from pg_replication_slots where slot_name = ${slot}`;
  return row?.bytes ?? null;
}

/** Drops the slot, the publication and the capture's state row; returns what existed. */
export async function dropCapture(sql: Sql, config: { slot: string; publication: string }) {
  const [slot] = await sql<{ active_pid: number | null }[]>`
    select active_pid from pg_replication_slots where slot_name = ${config.slot}`;
  if (slot?.active_pid) {
    throw new CaptureError(
      `slot ${config.slot} is in use by server process ${slot.active_pid}: stop the capture first`,
    );
  }
  if (slot) await sql`select pg_drop_replication_slot(${config.slot})`;
  const [publication] = await sql`select 1 from pg_publication where pubname = ${config.publication}`;
  if (publication) await sql`drop publication ${sql(config.publication)}`;
  const [state] = await sql<{ table: string | null }[]>`select to_regclass('cdc_capture_state')::text as table`;
  if (state.table) await sql`delete from cdc_capture_state where slot_name = ${config.slot}`;
  return { slotDropped: slot !== undefined, publicationDropped: publication !== undefined };
}

/**
 * Stops a run asked for a failover slot on a server before PostgreSQL 17, which has none: a slot
 * made without it would be lost at a standby's promotion, which is what the setting guards against.
 */
async function refuseFailoverBefore17(sql: Sql): Promise<void> {
  const [server] = await sql<{ num: number; version: string }[]>`
    select current_setting('server_version_num')::int as num, current_setting('server_version') as version`;
  if (server.num >= 170000) return;
  throw new CaptureError(
    `slot.failover=true (--slot-failover, CAPTURE_SLOT_FAILOVER) needs PostgreSQL 17 or later, and this server is ` +
      `PostgreSQL ${server.version.split(" ")[0]}: set it to false, or upgrade the server`,
  );
}

/**
 * Readies PostgreSQL for a run: the contract's tables (created as the consumer creates them, so
 * the capture can start first), the state table, the tables' identity, a lost or invalidated slot
 * refused, and the publication.
 */
export async function prepareDatabase(
  sql: Sql,
  config: Pick<CaptureConfig, "tables" | "slot" | "publication" | "newSnapshot" | "slotFailover"> & {
    replicaIdentityAutoset?: IdentityRule[];
    skippedOperations?: ReadonlySet<string>;
  },
  ensureContractTables?: (sql: Sql) => Promise<void>,
): Promise<void> {
  if (config.slotFailover) await refuseFailoverBefore17(sql);
  if (config.tables.some((t) => t.schema === "public" && (t.table === "users" || t.table === "orders"))) {
    await ensureContractTables?.(sql);
  }
  await ensureStateTable(sql);
  await prepareTables(sql, config.tables, config.replicaIdentityAutoset);
  const state = await slotState(sql, config.slot);
  if (!config.newSnapshot) await refuseLostSlot(sql, config.slot, state);
  const mayAdd = config.newSnapshot || !state.snapshotDone;
  await ensurePublication(sql, config.publication, config.tables, mayAdd, config.skippedOperations);
}
