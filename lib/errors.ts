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
 * A PostgreSQL or socket failure. Outages are the socket errors and SQLSTATE class 08
 * (connection), 53 (resources), 57P (shutdown) and 25006 (read-only); TRANSIENT_SQLSTATE
 * (serialization, deadlock, lock timeout, idle transaction ended) are transient; class 22 (data)
 * and 23 (integrity) belong to the record. Everything else is fatal: a dropped table (42P01), a
 * refused login (28P01), a missing database (3D000), an error with no code at all (a bug of
 * ours) will not pass by waiting.
 */
function classifyDatabase(code: unknown): FailureKind {
  if (typeof code !== "string") return "fatal";
  if (SOCKET_CODES.has(code)) return "outage";
  if (!/^[0-9A-Z]{5}$/.test(code)) return "fatal";
  if (OUTAGE_SQLSTATE.test(code)) return "outage";
  if (TRANSIENT_SQLSTATE.has(code)) return "transient";
  if (code.startsWith("22") || code.startsWith("23")) return "record";
  return "fatal";
}

/** kafkajs error names of a broker that is away, slow or moving leadership: waited out. */
const KAFKA_OUTAGE_NAMES = new Set([
  "KafkaJSConnectionError",
  "KafkaJSRequestTimeoutError",
  "KafkaJSNumberOfRetriesExceeded",
  "KafkaJSConnectionClosedError",
  "KafkaJSBrokerNotFound",
  "KafkaJSLockTimeout",
  "KafkaJSMetadataNotLoaded",
  "KafkaJSTopicMetadataNotLoaded",
  "KafkaJSStaleTopicMetadataAssignment",
]);

/** Kafka error types telling a member that the group has moved on without it. */
const MEMBERSHIP_LOST = new Set([
  "REBALANCE_IN_PROGRESS",
  "UNKNOWN_MEMBER_ID",
  "ILLEGAL_GENERATION",
  "FENCED_INSTANCE_ID",
]);

/** Kafka error types of a refused login or a refused authorization: a setting to fix. */
const KAFKA_REFUSED = new Set([
  "SASL_AUTHENTICATION_FAILED",
  "ILLEGAL_SASL_STATE",
  "UNSUPPORTED_SASL_MECHANISM",
  "TOPIC_AUTHORIZATION_FAILED",
  "GROUP_AUTHORIZATION_FAILED",
]);

/** Kafka error types of one record the broker will not take (too large, invalid): no retry sends it. */
const KAFKA_RECORD = new Set(["MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_RECORD", "CORRUPT_MESSAGE"]);

type KafkaLike = { name?: unknown; type?: unknown; retriable?: unknown; cause?: unknown } | null | undefined;

/** Whether a failure came from Kafka: kafkajs' own, one carrying a Kafka error type or retriable flag, or one caused by such. */
function fromKafka(error: unknown): boolean {
  const e = error as KafkaLike;
  if (e === null || typeof e !== "object") return false;
  if (isKafkaJSError(e) || typeof e.type === "string" || typeof e.retriable === "boolean") return true;
  return e.cause !== undefined && fromKafka(e.cause);
}

/** A Kafka failure, by kafkajs' error name, the Kafka error type and its retriable flag; a cause decides last. */
function classifyKafka(error: unknown): FailureKind {
  const e = error as KafkaLike;
  if (!e || typeof e !== "object") return "fatal";
  if (isKafkaAuthError(e)) return "fatal";
  if (typeof e.type === "string" && MEMBERSHIP_LOST.has(e.type)) return "transient";
  if (typeof e.type === "string" && KAFKA_RECORD.has(e.type)) return "record";
  if (e.retriable === true || KAFKA_OUTAGE_NAMES.has(e.name as string)) return "outage";
  return e.cause !== undefined ? classifyKafka(e.cause) : "fatal";
}

/**
 * The one classifier of the project, for PostgreSQL and Kafka failures alike: by SQLSTATE class
 * and socket code, or by kafkajs error name and Kafka error type; never by message text. A group
 * membership lost (a rebalance) is transient: the batch is given up and the group rejoined.
 */
export function classify(error: unknown): FailureKind {
  return fromKafka(error) ? classifyKafka(error) : classifyDatabase((error as { code?: unknown } | null)?.code);
}

/** Which dependency a failure came from, for the health flags. */
export function dependencyOf(error: unknown): "kafka" | "database" {
  return fromKafka(error) ? "kafka" : "database";
}

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

/**
 * Whether a Kafka failure is a refused login (SASL) or authorization, or a listener that closes
 * every connection of a client without its SASL or TLS settings (lib/kafka_listener.ts): waiting
 * will not fix them.
 */
export function isKafkaAuthError(error: unknown): boolean {
  const e = error as { name?: unknown; type?: unknown } | null;
  return e?.name === "KafkaJSSASLAuthenticationError" || e?.name === "KafkaListenerError" ||
    KAFKA_REFUSED.has(e?.type as string);
}

/**
 * The base of the project's typed errors: `name` is the subclass's, the underlying error is kept
 * as `cause`, and each subclass adds the fields an operator needs (topic, partition, offset).
 */
export class PipelineError extends Error {
  /** Creates the error with a one-line message naming what happened and what to do. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A partition's offset stored in PostgreSQL is past its log's end: the topic was recreated. */
export class TopicRecreatedError extends PipelineError {
  /** Names the partition, the stored offset and the log's end. */
  constructor(readonly topic: string, readonly partition: number, readonly offset: bigint, readonly logEnd: bigint) {
    super(
      `${topic}:${partition} is stored in PostgreSQL at offset ${offset} but the log ends at ${logEnd}: ` +
        `the topic was recreated; run consume --rebuild to apply it from the start`,
    );
  }
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
