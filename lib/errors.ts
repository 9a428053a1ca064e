/**
 * The one error taxonomy of the project. A failure either belongs to a record (it goes to the
 * DLQ), is transient (retry the transaction), is an outage (wait with backoff, commit nothing,
 * never dead-letter), or is fatal (stop the run with one line: waiting would never end). Decided
 * by SQLSTATE classes, socket codes and Kafka error types, never by message text.
 * @module
 */

/** What a failure means for the record that met it, and for the run. */
export type FailureKind = "record" | "transient" | "outage" | "fatal";

const SOCKET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
]);

/** SQLSTATE classes and codes of a server that is away, overloaded or going down: waited out. */
const OUTAGE_SQLSTATE = /^(08|53|57P)|^25006$/;

/**
 * SQLSTATEs after which the transaction is simply tried again: serialization failure, deadlock,
 * a lock wait past lock_timeout (55P03: another member holds the rows, perhaps frozen), and the
 * server ending a transaction left idle past idle_in_transaction_session_timeout (25P03: this
 * member was frozen; the retry finds out whether another applied meanwhile).
 */
const TRANSIENT_SQLSTATE = new Set(["40001", "40P01", "55P03", "25P03"]);

/**
 * Classifies a PostgreSQL failure. Outages are the socket errors and SQLSTATE class 08
 * (connection), 53 (resources), 57P (shutdown) and 25006 (read-only); TRANSIENT_SQLSTATE
 * (serialization, deadlock, lock timeout, idle transaction ended) are transient; class 22 (data)
 * and 23 (integrity) belong to the record. Everything else is fatal: a dropped table (42P01), a
 * refused login (28P01), a missing database (3D000), an error with no code at all (a bug of
 * ours) will not pass by waiting.
 */
export function classifyDatabaseError(error: unknown): FailureKind {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return "fatal";
  if (SOCKET_CODES.has(code)) return "outage";
  if (!/^[0-9A-Z]{5}$/.test(code)) return "fatal";
  if (OUTAGE_SQLSTATE.test(code)) return "outage";
  if (TRANSIENT_SQLSTATE.has(code)) return "transient";
  if (code.startsWith("22") || code.startsWith("23")) return "record";
  return "fatal";
}

/** Whether a Kafka failure is worth waiting out (connection, timeout, leadership, retriable). */
export function isKafkaOutage(error: unknown): boolean {
  const e = error as { name?: string; retriable?: boolean; type?: string; cause?: unknown } | null;
  if (!e) return false;
  if (isKafkaAuthError(error)) return false;
  if (e.retriable === true) return true;
  if (
    e.name === "KafkaJSConnectionError" || e.name === "KafkaJSRequestTimeoutError" ||
    e.name === "KafkaJSNumberOfRetriesExceeded" || e.name === "KafkaJSConnectionClosedError" ||
    e.name === "KafkaJSBrokerNotFound" || e.name === "KafkaJSLockTimeout" || e.name === "KafkaJSMetadataNotLoaded" ||
    e.name === "KafkaJSTopicMetadataNotLoaded" || e.name === "KafkaJSStaleTopicMetadataAssignment"
  ) return true;
  return e.cause !== undefined && isKafkaOutage(e.cause);
}

/** Kafka error types telling a member that the group has moved on without it. */
const MEMBERSHIP_LOST = new Set([
  "REBALANCE_IN_PROGRESS",
  "UNKNOWN_MEMBER_ID",
  "ILLEGAL_GENERATION",
  "FENCED_INSTANCE_ID",
]);

/** Whether a heartbeat's failure means the member no longer owns its partitions: the group rebalances. */
export function isGroupMembershipLost(error: unknown): boolean {
  const type = (error as { type?: unknown } | null)?.type;
  return typeof type === "string" && MEMBERSHIP_LOST.has(type);
}

/** Whether `error` is one of kafkajs' own errors (they all carry a `KafkaJS` name). */
export function isKafkaJSError(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === "string" && name.startsWith("KafkaJS");
}

/** Whether a Kafka failure is a refused login (SASL), which waiting will not fix. */
export function isKafkaAuthError(error: unknown): boolean {
  const e = error as { name?: string; type?: string } | null;
  return e?.name === "KafkaJSSASLAuthenticationError" || e?.type === "SASL_AUTHENTICATION_FAILED" ||
    e?.type === "TOPIC_AUTHORIZATION_FAILED" || e?.type === "GROUP_AUTHORIZATION_FAILED";
}

/** node:tls codes of a server certificate the client refused: a setting to fix, said so. */
const CERTIFICATE_REFUSED = /^(CERT_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_|ERR_TLS_CERT_ALTNAME)/;

/**
 * A one-line description of an error: its name or code, then its first message line; for a
 * refused server certificate, what to check.
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const label = typeof code === "string" && code ? `${error.name} ${code}` : error.name;
  const message = (error.message || "").split("\n")[0];
  const cause = error.cause instanceof Error && error.name === "KafkaJSNumberOfRetriesExceeded"
    ? `: ${describeError(error.cause)}`
    : "";
  const hint = typeof code === "string" && CERTIFICATE_REFUSED.test(code)
    ? " (the server's TLS certificate is not trusted: check the CA file, e.g. sslrootcert in DATABASE_URL, and that the host name is in the certificate)"
    : "";
  return `${label}: ${message}${cause}${hint}`;
}
