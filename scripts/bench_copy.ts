/**
 * The bench's reference for the consumer's writes: PostgreSQL's COPY loading the rows the consumer
 * left into empty twin tables.
 * @module
 */
import postgres from "postgres";

const COPY_ESCAPES: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };

/** Rows in COPY's text format: tab-separated, `\N` for null, backslash escapes. */
function copyText(rows: Record<string, unknown>[]): string {
  const field = (v: unknown) => (v === null ? "\\N" : String(v).replace(/[\\\t\n\r]/g, (c) => COPY_ESCAPES[c]));
  return rows.map((r) => Object.values(r).map(field).join("\t")).join("\n") + "\n";
}

/** Loads the consumer's final rows in `databaseUrl` into empty twin tables with COPY; returns seconds and rows. */
export async function copySameRows(databaseUrl: string): Promise<{ seconds: number; rows: number }> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const users = await sql`select id, name, dob::text, created_at::text, modified_at::text, is_deleted from users`;
  const orders =
    await sql`select id, status, user_id, quantity, total_amount::text, placed_at::text, modified_at::text, is_deleted from orders`;
  // Same columns, keys and indexes; no triggers or foreign keys, which COPY would not need either.
  await sql`create table copy_users (like users including all)`;
  await sql`create table copy_orders (like orders including all)`;
  const texts = [["copy_users", copyText(users)], ["copy_orders", copyText(orders)]] as const;
  const started = performance.now();
  for (const [table, text] of texts) {
    const writable = await sql.unsafe(`copy ${table} from stdin`).writable();
    await new Promise<void>((resolve, reject) => {
      writable.on("error", reject);
      writable.on("finish", resolve);
      writable.end(text);
    });
  }
  const seconds = (performance.now() - started) / 1000;
  const [{ n }] = await sql`select (select count(*) from copy_users) + (select count(*) from copy_orders) as n`;
  await sql.end();
  if (Number(n) !== users.length + orders.length) {
    throw new Error(`COPY loaded ${n} of ${users.length + orders.length}`);
  }
  return { seconds, rows: users.length + orders.length };
}
