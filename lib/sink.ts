/**
 * PostgreSQL side of the consumer: the schema, the stored offsets (cdc_offsets), and applying
 * a partition's batch of validated changes with set-based statements (`unnest` upserts) inside
 * the caller's transaction, the one that also advances the partition's stored offset. That
 * shared transaction is what makes the effects exactly-once (lib/consumer_batch.ts).
 * @module
 */
import type { Sql, Tx } from "./database.ts";
import type { OrderChange, UserChange } from "./model.ts";
import { classify, describeError, PipelineError } from "./errors.ts";
import { TRANSIENT, waitOut, withinDeadline } from "./retry.ts";
import { type PartitionKey, partitionKey } from "./partition_key.ts";

/** A change the database or the log refused; `index` is its position in the batch. */
export interface Rejection {
  /** Position of the change in the batch given to {@linkcode applyChanges}. */
  index: number;
  /** Why, for a person reading the DLQ. */
  reason: string;
}

/** What {@linkcode applyChanges} did. Every change before `blocked.index` (or all) is done. */
export interface ApplyOutcome {
  /** Changes that go to the DLQ instead. */
  rejected: Rejection[];
  /** The first order whose user does not exist yet; it and what follows were not applied. */
  blocked?: { index: number; userId: string };
}

/** Key of the advisory lock that serialises schema creation between consumers starting at once. */
const SCHEMA_LOCK = 0x0cdc_5c4e;

/** Body of the trigger function that cascades a user's soft delete to the user's orders. */
const CASCADE_USER_DELETE = `
      begin
        update orders set is_deleted = true where user_id = new.id and is_deleted is not true;
        return null;
      end `;

/** What of the schema is missing or out of date, as read from the catalog. */
interface SchemaGaps {
  users: boolean;
  orders: boolean;
  ordersUserIdIndex: boolean;
  offsets: boolean;
  cascadeFunction: boolean;
  cascadeTrigger: boolean;
  /** Objects of earlier versions that must go. */
  legacyTrigger: boolean;
  legacyFunction: boolean;
}

/**
 * Reads the catalog for what {@linkcode ensureSchema} would create. It takes no lock on the
 * tables, so it neither waits on nor blocks a member's batch transaction.
 */
async function schemaGaps(sql: Sql | Tx): Promise<SchemaGaps> {
  const [row] = await sql<SchemaGaps[]>`
    select
      to_regclass('users') is null as users,
      to_regclass('orders') is null as orders,
      to_regclass('orders_user_id_idx') is null as "ordersUserIdIndex",
      to_regclass('cdc_offsets') is null as offsets,
      not exists (select from pg_proc where oid = to_regproc('cdc_cascade_user_delete')
        and prosrc = ${CASCADE_USER_DELETE}) as "cascadeFunction",
      not exists (select from pg_trigger where tgrelid = to_regclass('users')
        and tgname = 'users_cascade_soft_delete' and not tgisinternal) as "cascadeTrigger",
      exists (select from pg_trigger where tgrelid = to_regclass('orders')
        and tgname = 'orders_inherit_soft_delete') as "legacyTrigger",
      to_regproc('cdc_inherit_user_delete') is not null as "legacyFunction"`;
  return row;
}

/** Options of {@linkcode ensureSchema}. */
export interface EnsureSchemaOptions {
  /** Ends the retries of deadlocks and serialization failures. */
  signal?: AbortSignal;
  /** Called before each retry of a deadlock or serialization failure. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Creates what is missing of the tables, indexes and soft-delete trigger of docs/CONTRACT.md section
 * 3. The catalog is read first: when the schema is current, which is every start but the first,
 * no DDL runs and no lock is taken, so a consumer joining while another's batch transaction is
 * open (or frozen) neither waits on it nor deadlocks with it. What is missing is created in one
 * transaction under an advisory lock, re-read under that lock, so consumers starting at once all
 * succeed; a deadlock or serialization failure (40P01, 40001) is retried with backoff, as a batch is.
 */
export async function ensureSchema(sql: Sql, options: EnsureSchemaOptions = {}): Promise<void> {
  const current = (gaps: SchemaGaps) => Object.values(gaps).every((missing) => !missing);
  if (current(await schemaGaps(sql))) return;
  await waitOut(() =>
    sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${SCHEMA_LOCK})`;
      const gaps = await schemaGaps(tx);
      if (!current(gaps)) await createMissing(tx, gaps);
    }), {
    what: "creating the schema",
    policy: TRANSIENT,
    isRetriable: (error) => classify(error) === "transient",
    signal: options.signal,
    onWait: options.onRetry,
  });
}

/** Creates each object `gaps` names, and drops what earlier versions made and this one does not use. */
async function createMissing(tx: Tx, gaps: SchemaGaps): Promise<void> {
  if (gaps.users) {
    await tx`
      create table if not exists users (
        id uuid primary key,
        name varchar(50) not null,
        dob date not null,
        created_at timestamptz,
        modified_at timestamptz,
        is_deleted boolean default false
      )`;
  }
  if (gaps.orders) {
    await tx`
      create table if not exists orders (
        id uuid primary key,
        status varchar(10) not null,
        user_id uuid not null references users(id),
        quantity integer not null,
        total_amount numeric(10,2) not null,
        placed_at timestamptz,
        modified_at timestamptz,
        is_deleted boolean default false
      )`;
  }
  if (gaps.ordersUserIdIndex) await tx`create index if not exists orders_user_id_idx on orders (user_id)`;
  // How far the tables have applied each source partition, advanced by the transaction that
  // applies it (docs/CONTRACT.md invariant 2). It belongs to the tables, not to a consumer group:
  // any group applying into this database resumes here; consumer_group says who wrote last.
  if (gaps.offsets) {
    await tx`
      create table if not exists cdc_offsets (
        topic text not null,
        partition integer not null,
        next_offset bigint not null,
        consumer_group text not null,
        updated_at timestamptz not null default now(),
        primary key (topic, partition)
      )`;
  }
  // A deleted user's orders are deleted, whenever either arrives: this trigger cascades the
  // user's delete to existing orders; planOrders marks orders that arrive afterwards.
  if (gaps.cascadeFunction) {
    // DDL takes no parameters; the body is this module's constant, the one schemaGaps compares.
    await tx.unsafe(
      `create or replace function cdc_cascade_user_delete() returns trigger language plpgsql as $body$${CASCADE_USER_DELETE}$body$`,
    );
  }
  if (gaps.cascadeTrigger) {
    await tx`
      create trigger users_cascade_soft_delete
        after update of is_deleted on users for each row
        when (new.is_deleted and old.is_deleted is not true)
        execute function cdc_cascade_user_delete()`;
  }
  // Orders arriving after their user's delete are marked by planOrders, which reads the user
  // anyway; a per-row trigger doing it slowed the orders' apply (docs/PERFORMANCE.md). Schemas made
  // by earlier versions lose that trigger here.
  if (gaps.legacyTrigger) await tx`drop trigger if exists orders_inherit_soft_delete on orders`;
  if (gaps.legacyFunction) await tx`drop function if exists cdc_inherit_user_delete()`;
}

/** Array elements that must be quoted: empty, the word NULL, or holding a delimiter, quote, backslash or space. */
const NEEDS_QUOTES = /^$|^null$|[{}",\\\s]/i;

/**
 * A PostgreSQL array literal of `values` (null and undefined become NULL). Only elements that
 * need it are quoted: ids, timestamps and numbers pass as they are, at far less client CPU than
 * postgres.js' element-by-element array serializer (docs/PERFORMANCE.md).
 */
export function arrayLiteral(values: readonly (string | null | undefined)[]): string {
  let literal = "{";
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) literal += ",";
    if (value === null || value === undefined) literal += "NULL";
    else if (NEEDS_QUOTES.test(value)) literal += `"${value.replace(/[\\"]/g, "\\$&")}"`;
    else literal += value;
  }
  return literal + "}";
}

/** OIDs of the array types {@linkcode arrayOf} binds. */
const ARRAY_OID = { "varchar[]": 1015, "text[]": 1009 } as const;

/**
 * `values` as one array parameter of `type`, written by {@linkcode arrayLiteral}: for text that may
 * hold any character (names). Bound with its own array type, not text[] cast in SQL: the server
 * parses each element once instead of twice.
 */
function arrayOf(tx: Tx, values: readonly (string | null | undefined)[], type: keyof typeof ARRAY_OID) {
  return tx.typed(arrayLiteral(values), ARRAY_OID[type]);
}

/**
 * `values` joined by commas, for `string_to_array(${listOf(values)}, ',', '')::<type>[]` in SQL:
 * null and undefined become empty elements, which that call reads as NULL. Only for values that
 * validation keeps free of commas (ids, timestamps, dates, numbers, booleans, statuses). The
 * server splits this for less CPU than it parses an array literal, and the client joins it for
 * less than {@linkcode arrayLiteral} (docs/PERFORMANCE.md). A list of one NULL comes out empty;
 * `unnest` pads it back to NULL beside the ids, which are never null.
 */
export function listOf(values: readonly (string | number | boolean | null | undefined)[]): string {
  return values.join(",");
}

interface UserPatch {
  id: string;
  create?: { name: string; dob: string; createdAt?: string };
  name?: string;
  modifiedAt?: string;
  deleted: boolean;
}

interface OrderPatch {
  id: string;
  create?: { status: string; userId: string; quantity: number; total: string; placedAt?: string };
  status?: string;
  modifiedAt?: string;
  deleted: boolean;
}

function missingRow(entity: string, type: string, id: string): string {
  return `${type} of ${entity} ${id}, which does not exist`;
}

/** Folds a user batch per key in log order into one patch per key. */
export function planUserBatch(
  changes: UserChange[],
  existing: Set<string>,
): { patches: UserPatch[]; rejected: Rejection[] } {
  const patches = new Map<string, UserPatch>();
  const rejected: Rejection[] = [];
  const exists = new Set(existing);
  changes.forEach((change, index) => {
    if (change.type !== "CREATE" && !exists.has(change.id)) {
      rejected.push({ index, reason: missingRow("user", change.type, change.id) });
      return;
    }
    const patch = patches.get(change.id) ?? { id: change.id, deleted: false };
    patches.set(change.id, patch);
    if (change.type === "CREATE") {
      exists.add(change.id);
      patch.create = { name: change.name!, dob: change.dob!, createdAt: change.createdAt };
      patch.name = undefined;
    } else {
      if (change.type === "UPDATE") patch.name = change.name;
      else patch.deleted = true;
      patch.modifiedAt = change.modifiedAt ?? patch.modifiedAt;
    }
  });
  return { patches: [...patches.values()].sort((a, b) => (a.id < b.id ? -1 : 1)), rejected };
}

/**
 * Folds an order batch per key in log order, stopping at the first CREATE whose user does not
 * exist (it waits; what follows it in the partition waits with it).
 */
export function planOrderBatch(
  changes: OrderChange[],
  existingOrders: Set<string>,
  existingUsers: Set<string>,
): { patches: OrderPatch[]; rejected: Rejection[]; blocked?: { index: number; userId: string } } {
  const patches = new Map<string, OrderPatch>();
  const rejected: Rejection[] = [];
  const exists = new Set(existingOrders);
  let blocked: { index: number; userId: string } | undefined;
  for (let index = 0; index < changes.length; index++) {
    const change = changes[index];
    if (change.type === "CREATE" && !existingUsers.has(change.userId!)) {
      blocked = { index, userId: change.userId! };
      break;
    }
    if (change.type !== "CREATE" && !exists.has(change.id)) {
      rejected.push({ index, reason: missingRow("order", change.type, change.id) });
      continue;
    }
    const patch = patches.get(change.id) ?? { id: change.id, deleted: false };
    patches.set(change.id, patch);
    if (change.type === "CREATE") {
      exists.add(change.id);
      patch.create = {
        status: change.status,
        userId: change.userId!,
        quantity: change.quantity!,
        total: change.total!,
        placedAt: change.placedAt,
      };
      patch.status = undefined;
    } else {
      patch.status = change.status;
      patch.modifiedAt = change.modifiedAt ?? patch.modifiedAt;
      if (change.type === "DELETE") patch.deleted = true;
    }
  }
  return { patches: [...patches.values()].sort((a, b) => (a.id < b.id ? -1 : 1)), rejected, blocked };
}

/** The ids among `ids` that are rows of `table`. */
async function existingIds(tx: Tx, table: "users" | "orders", ids: string[]): Promise<Set<string>> {
  const rows = await tx<{ id: string }[]>`select id::text as id from ${tx(table)} where id = any(string_to_array(${
    listOf(ids)
  }, ',', '')::uuid[])`;
  return new Set(rows.map((r) => r.id));
}

/** A statement postgres.js has not sent yet: it goes out when first awaited, in the order awaited. */
type Unsent = PromiseLike<unknown>;

/** A batch read and planned: what applying it will do, and its writes, not sent yet. */
export interface PlannedApply {
  /** Rejections and the blocking order, known before any write. */
  outcome: ApplyOutcome;
  /** The writes; awaited together they go to PostgreSQL in one round trip. */
  writes: Unsent[];
}

// Every write below ends in `where (row) is distinct from (new values)`: a re-sent event that
// changes nothing writes nothing, so it leaves no WAL, no dead tuple and no capture record.
async function planUsers(tx: Tx, changes: UserChange[]): Promise<PlannedApply> {
  const ids = [...new Set(changes.map((c) => c.id))];
  const { patches, rejected } = planUserBatch(changes, await existingIds(tx, "users", ids));
  const creates = patches.filter((p) => p.create);
  const updates = patches.filter((p) => !p.create);
  const writes: Unsent[] = [];
  const deleting = patches.filter((p) => p.deleted).map((p) => p.id);
  // A delete first waits for the order batches that hold these users FOR KEY SHARE (planOrders), and
  // holds back the next until it commits: its cascade then sees their orders, and they see the delete.
  // Renames take no such lock, so they never wait on the orders' transactions.
  if (deleting.length) {
    writes.push(
      tx`select from users where id = any(string_to_array(${
        listOf(deleting)
      }, ',', '')::uuid[]) order by id for update`,
    );
  }
  if (creates.length) {
    writes.push(tx`
      insert into users as u (id, name, dob, created_at, modified_at, is_deleted)
      select * from unnest(
        string_to_array(${listOf(creates.map((p) => p.id))}, ',', '')::uuid[],
        ${arrayOf(tx, creates.map((p) => p.name ?? p.create!.name), "varchar[]")},
        string_to_array(${listOf(creates.map((p) => p.create!.dob))}, ',', '')::date[],
        string_to_array(${listOf(creates.map((p) => p.create!.createdAt))}, ',', '')::timestamptz[],
        string_to_array(${listOf(creates.map((p) => p.modifiedAt))}, ',', '')::timestamptz[],
        string_to_array(${listOf(creates.map((p) => p.deleted))}, ',', '')::boolean[])
      on conflict (id) do update set
        name = excluded.name,
        dob = excluded.dob,
        created_at = excluded.created_at,
        modified_at = coalesce(excluded.modified_at, u.modified_at),
        is_deleted = u.is_deleted or excluded.is_deleted
      where (u.name, u.dob, u.created_at, u.modified_at, u.is_deleted) is distinct from
        (excluded.name, excluded.dob, excluded.created_at, coalesce(excluded.modified_at, u.modified_at),
         u.is_deleted or excluded.is_deleted)`);
  }
  if (updates.length) {
    writes.push(tx`
      update users as u set
        name = coalesce(p.name, u.name),
        modified_at = coalesce(p.modified_at, u.modified_at),
        is_deleted = u.is_deleted or p.is_deleted
      from unnest(
        string_to_array(${listOf(updates.map((p) => p.id))}, ',', '')::uuid[],
        ${arrayOf(tx, updates.map((p) => p.name), "varchar[]")},
        string_to_array(${listOf(updates.map((p) => p.modifiedAt))}, ',', '')::timestamptz[],
        string_to_array(${
      listOf(updates.map((p) => p.deleted))
    }, ',', '')::boolean[]) as p(id, name, modified_at, is_deleted)
      where u.id = p.id and (u.name, u.modified_at, u.is_deleted) is distinct from
        (coalesce(p.name, u.name), coalesce(p.modified_at, u.modified_at), u.is_deleted or p.is_deleted)`);
  }
  return { outcome: { rejected }, writes };
}

async function planOrders(tx: Tx, changes: OrderChange[]): Promise<PlannedApply> {
  const userIds = [...new Set(changes.filter((c) => c.type === "CREATE").map((c) => c.userId!))].sort();
  // FOR KEY SHARE waits for a concurrent user delete (planUsers locks those FOR UPDATE) to commit, so its cascade
  // cannot miss these orders; the foreign-key checks of the insert find the lock taken.
  // Both reads go out together: one round trip.
  const [users, found] = await Promise.all([
    userIds.length
      ? tx<{ id: string; is_deleted: boolean | null }[]>`
        select id::text as id, is_deleted from users where id = any(string_to_array(${
        listOf(userIds)
      }, ',', '')::uuid[]) order by id for key share`
      : [],
    existingIds(tx, "orders", [...new Set(changes.map((c) => c.id))]),
  ]);
  const plan = planOrderBatch(changes, found, new Set(users.map((r) => r.id)));
  const creates = plan.patches.filter((p) => p.create);
  // An order of a deleted user is deleted too (docs/CONTRACT.md section 3); the lock above keeps the
  // flag read here current until commit.
  const deletedUsers = new Set(users.filter((r) => r.is_deleted).map((r) => r.id));
  for (const p of creates) if (deletedUsers.has(p.create!.userId)) p.deleted = true;
  const updates = plan.patches.filter((p) => !p.create);
  const writes: Unsent[] = [];
  if (creates.length) {
    writes.push(tx`
      insert into orders as o (id, status, user_id, quantity, total_amount, placed_at, modified_at, is_deleted)
      select * from unnest(
        string_to_array(${listOf(creates.map((p) => p.id))}, ',', '')::uuid[],
        string_to_array(${listOf(creates.map((p) => p.status ?? p.create!.status))}, ',', '')::varchar[],
        string_to_array(${listOf(creates.map((p) => p.create!.userId))}, ',', '')::uuid[],
        string_to_array(${listOf(creates.map((p) => p.create!.quantity))}, ',', '')::integer[],
        string_to_array(${listOf(creates.map((p) => p.create!.total))}, ',', '')::numeric[],
        string_to_array(${listOf(creates.map((p) => p.create!.placedAt))}, ',', '')::timestamptz[],
        string_to_array(${listOf(creates.map((p) => p.modifiedAt))}, ',', '')::timestamptz[],
        string_to_array(${listOf(creates.map((p) => p.deleted))}, ',', '')::boolean[])
      on conflict (id) do update set
        status = excluded.status,
        user_id = excluded.user_id,
        quantity = excluded.quantity,
        total_amount = excluded.total_amount,
        placed_at = excluded.placed_at,
        modified_at = coalesce(excluded.modified_at, o.modified_at),
        is_deleted = o.is_deleted or excluded.is_deleted
      where (o.status, o.user_id, o.quantity, o.total_amount, o.placed_at, o.modified_at, o.is_deleted) is distinct from
        (excluded.status, excluded.user_id, excluded.quantity, excluded.total_amount, excluded.placed_at,
         coalesce(excluded.modified_at, o.modified_at), o.is_deleted or excluded.is_deleted)`);
  }
  if (updates.length) {
    writes.push(tx`
      update orders as o set
        status = coalesce(p.status, o.status),
        modified_at = coalesce(p.modified_at, o.modified_at),
        is_deleted = o.is_deleted or p.is_deleted
      from unnest(
        string_to_array(${listOf(updates.map((p) => p.id))}, ',', '')::uuid[],
        string_to_array(${listOf(updates.map((p) => p.status))}, ',', '')::varchar[],
        string_to_array(${listOf(updates.map((p) => p.modifiedAt))}, ',', '')::timestamptz[],
        string_to_array(${
      listOf(updates.map((p) => p.deleted))
    }, ',', '')::boolean[]) as p(id, status, modified_at, is_deleted)
      where o.id = p.id and (o.status, o.modified_at, o.is_deleted) is distinct from
        (coalesce(p.status, o.status), coalesce(p.modified_at, o.modified_at), o.is_deleted or p.is_deleted)`);
  }
  return { outcome: { rejected: plan.rejected, blocked: plan.blocked }, writes };
}

/**
 * Reads what one partition's validated changes (all users or all orders) need and plans them in
 * log order per key, inside the caller's transaction; the writes are returned unsent, so the
 * caller sends them together with its own statements. A record PostgreSQL refuses fails the
 * whole transaction: {@linkcode applyChanges} isolates it.
 */
export async function planChanges(tx: Tx, changes: UserChange[] | OrderChange[]): Promise<PlannedApply> {
  if (changes.length === 0) return { outcome: { rejected: [] }, writes: [] };
  return changes[0].entity === "user"
    ? await planUsers(tx, changes as UserChange[])
    : await planOrders(tx, changes as OrderChange[]);
}

/** Applies `changes` in a savepoint; on an error that belongs to a record, halves them until the culprit is alone. */
async function applyIsolatingCulprits(tx: Tx, changes: UserChange[] | OrderChange[]): Promise<ApplyOutcome> {
  try {
    return await tx.savepoint(async (sp) => {
      const planned = await planChanges(sp, changes);
      await Promise.all(planned.writes);
      return planned.outcome;
    }) as ApplyOutcome;
  } catch (error) {
    if (classify(error) !== "record") throw error;
    if (changes.length === 1) {
      return { rejected: [{ index: 0, reason: `PostgreSQL rejected the record: ${describeError(error)}` }] };
    }
    const middle = Math.ceil(changes.length / 2);
    const left = await applyIsolatingCulprits(tx, changes.slice(0, middle) as UserChange[] | OrderChange[]);
    if (left.blocked) return left;
    const right = await applyIsolatingCulprits(tx, changes.slice(middle) as UserChange[] | OrderChange[]);
    return {
      rejected: [...left.rejected, ...right.rejected.map((r) => ({ ...r, index: r.index + middle }))],
      blocked: right.blocked && { ...right.blocked, index: right.blocked.index + middle },
    };
  }
}

/**
 * Applies one partition's validated changes (all users or all orders) in log order per key,
 * inside the caller's transaction, each half in a savepoint: a database error that belongs to
 * one record (SQLSTATE class 22 or 23) rolls back to its savepoint and the batch is split until
 * that record is alone: it is rejected and every other change applies, all in the same
 * transaction. Other errors are thrown. The savepoints cost round trips and a subtransaction, so
 * the consumer runs this only after {@linkcode planChanges}' writes failed on a record.
 */
export async function applyChanges(tx: Tx, changes: UserChange[] | OrderChange[]): Promise<ApplyOutcome> {
  if (changes.length === 0) return { rejected: [] };
  return await applyIsolatingCulprits(tx, changes);
}

/** A partition's stored position: the offset of the next record the tables have not seen. */
export interface PartitionOffset {
  topic: string;
  partition: number;
  /** Next offset to apply. */
  nextOffset: bigint;
}

/** The stored offset moved away from the one this member started from: another member owns the partition now. */
export class FencedError extends PipelineError {
  /** Names the partition, the offset this member expected and the one stored (-1 when it moved meanwhile). */
  constructor(readonly topic: string, readonly partition: number, readonly expected: bigint, readonly stored: bigint) {
    super(
      `${
        partitionKey(topic, partition)
      } is at offset ${stored} in PostgreSQL, not ${expected}: another member applied it`,
    );
  }
}

/**
 * Locks the partition's row in cdc_offsets for this transaction (creating it at `expected` when
 * absent) and checks that it still holds `expected`; throws FencedError otherwise. The lock makes
 * a second member wait, then fail the same check, instead of applying the same records again.
 */
export async function claimOffset(tx: Tx, group: string, at: PartitionOffset): Promise<void> {
  const [row] = await tx<{ next_offset: string }[]>`
    insert into cdc_offsets as o (topic, partition, next_offset, consumer_group)
    values (${at.topic}, ${at.partition}, ${at.nextOffset.toString()}, ${group})
    on conflict (topic, partition) do update set consumer_group = excluded.consumer_group
    returning o.next_offset::text as next_offset`;
  const stored = BigInt(row.next_offset);
  if (stored !== at.nextOffset) throw new FencedError(at.topic, at.partition, at.nextOffset, stored);
}

/** Compare-and-set of a claimed partition's next offset from `from.nextOffset` to `to`, in the applying transaction. */
export async function advanceOffset(tx: Tx, from: PartitionOffset, to: bigint): Promise<void> {
  const moved = await tx`
    update cdc_offsets set next_offset = ${to.toString()}, updated_at = now()
    where topic = ${from.topic} and partition = ${from.partition} and next_offset = ${from.nextOffset.toString()}`;
  if (moved.count !== 1) throw new FencedError(from.topic, from.partition, from.nextOffset, -1n);
}

/** A session holding claimed rows of cdc_offsets while PostgreSQL waits on its client mid-statement. */
export interface StuckClaimHolder {
  pid: number;
  /** Seconds since its client last sent anything. */
  silentS: number;
  /** Its application_name and client address, for the log. */
  application: string;
  client: string | null;
}

/**
 * The sessions that hold a lock on cdc_offsets in an open transaction while PostgreSQL has waited
 * more than `silentS` seconds on their client in the middle of a statement (state active, wait
 * ClientRead). idle_in_transaction_session_timeout does not end them: PostgreSQL arms it only
 * between statements. postgres.js leaves such a gap on a statement's first use on a connection
 * (Parse and Describe, then Bind once the description is back), so a member frozen there (SIGSTOP,
 * a VM pause) keeps its claims for as long as it stays frozen.
 */
export async function stuckClaimHolders(sql: Sql, silentS: number): Promise<StuckClaimHolder[]> {
  return await sql<StuckClaimHolder[]>`
    select a.pid, extract(epoch from now() - a.state_change)::int as "silentS",
      a.application_name as application, host(a.client_addr) as client
    from pg_stat_activity a
    where a.datname = current_database() and a.pid <> pg_backend_pid() and a.xact_start is not null
      and a.state = 'active' and a.wait_event = 'ClientRead'
      and a.state_change < now() - make_interval(secs => ${silentS})
      and exists (select from pg_locks l where l.pid = a.pid and l.relation = 'cdc_offsets'::regclass and l.granted)`;
}

/** Ends session `pid` (pg_terminate_backend): its open transaction rolls back and its locks go. Throws 42501 when this role may not. */
export async function endSession(sql: Sql, pid: number): Promise<void> {
  await sql`select pg_terminate_backend(${pid})`;
}

/**
 * The stored offsets of `topics`, or undefined when the database fails or does not answer within
 * `timeoutMs`: the consumer's once-a-second read of its lag doubles as its health check.
 */
export async function storedOffsetsWithin(
  sql: Sql,
  topics: string[],
  timeoutMs = 3_000,
): Promise<Map<PartitionKey, bigint> | undefined> {
  return await withinDeadline(readStoredOffsets(sql, topics).catch(() => undefined), timeoutMs, () => undefined);
}

/** The stored next offsets of every partition of `topics`, keyed `topic:partition`. */
export async function readStoredOffsets(sql: Sql | Tx, topics: string[]): Promise<Map<PartitionKey, bigint>> {
  const rows = await sql<{ topic: string; partition: number; next_offset: string }[]>`
    select topic, partition, next_offset::text as next_offset from cdc_offsets where topic = any(${
    arrayOf(sql as Tx, topics, "text[]")
  })`;
  return new Map(rows.map((r) => [partitionKey(r.topic, r.partition), BigInt(r.next_offset)]));
}

/**
 * Empties users and orders and sets every partition of the source topics back to `starts` (the
 * logs' first offsets), in one transaction: the next consume rebuilds the tables from the log.
 * Every stored offset goes, not only these topics': they described tables that are now empty.
 */
export async function resetForRebuild(sql: Sql, group: string, starts: PartitionOffset[]): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`truncate orders, users`;
    await tx`delete from cdc_offsets`;
    for (const start of starts) await claimOffset(tx, group, start);
  });
}
