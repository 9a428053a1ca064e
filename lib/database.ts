/**
 * The one way into PostgreSQL for every command: a postgres.js pool from a libpq-style URL, with
 * libpq's TLS parameters mapped to postgres.js' options, the pool's types, and the signature of
 * postgres.js' write to a connection that has just closed.
 * @module
 */
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { ConfigError } from "./config.ts";

/** A postgres.js connection pool. */
export type Sql = postgres.Sql<Record<string, never>>;
/** A transaction (or savepoint) of a {@linkcode Sql} pool. */
export type Tx = postgres.TransactionSql<Record<string, never>>;
/** libpq's TLS parameters of a URL that postgres.js does not read; sent on, the server refuses them. */
const TLS_FILE_PARAMETERS = ["sslrootcert", "sslcert", "sslkey"] as const;
const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

/** postgres.js' `ssl` option: a mode it knows, or options for node:tls. */
export type DatabaseSsl = false | "require" | "allow" | "prefer" | "verify-full" | {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized: boolean;
  checkServerIdentity?: () => undefined;
};

/**
 * Maps libpq's TLS parameters of `url` (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, the names
 * users already have in their URLs) to postgres.js' `ssl` option, reading the PEM files, and
 * returns the URL without them. As libpq does: `verify-full` checks the chain and the host name,
 * `verify-ca` the chain only, `require` with a root certificate is `verify-ca`, `require`,
 * `prefer` and `allow` alone encrypt without checking; `sslrootcert=system` trusts the system's
 * CAs. Where libpq would default to `prefer`, a URL naming any certificate file is taken as
 * `verify-full`: whoever names a CA means it to be checked. Without any of these, `ssl` is
 * absent and postgres.js' own default holds. An unreadable file or unknown mode is a ConfigError.
 */
export function databaseTls(url: string): { url: string; ssl?: DatabaseSsl } {
  const parsed = new URL(url);
  const mode = parsed.searchParams.get("sslmode") ?? undefined;
  const [rootcert, certFile, keyFile] = TLS_FILE_PARAMETERS.map((name) => parsed.searchParams.get(name) ?? undefined);
  const anyFile = rootcert !== undefined || certFile !== undefined || keyFile !== undefined;
  if (mode === undefined && !anyFile) return { url };
  if (mode !== undefined && !SSL_MODES.includes(mode)) {
    throw new ConfigError(`DATABASE_URL sslmode must be one of ${SSL_MODES.join(", ")}: got ${JSON.stringify(mode)}`);
  }
  for (const name of ["sslmode", ...TLS_FILE_PARAMETERS]) parsed.searchParams.delete(name);
  const stripped = parsed.href;
  const effective = mode ?? "verify-full";
  if (effective === "disable") return { url: stripped, ssl: false };
  const systemCa = rootcert === "system";
  const ca = systemCa ? undefined : readPem("sslrootcert", rootcert);
  const cert = readPem("sslcert", certFile);
  const key = readPem("sslkey", keyFile);
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError(
      "DATABASE_URL sslcert and sslkey go together: give both files of the client certificate, or neither",
    );
  }
  const verify = effective === "verify-full" || effective === "verify-ca" ||
    (effective === "require" && (ca !== undefined || systemCa));
  if (!anyFile && effective !== "verify-ca") {
    return { url: stripped, ssl: effective as "require" | "allow" | "prefer" | "verify-full" };
  }
  return {
    url: stripped,
    ssl: {
      ...(ca !== undefined && { ca }),
      ...(cert !== undefined && { cert, key }),
      rejectUnauthorized: verify,
      ...(verify && effective !== "verify-full" && { checkServerIdentity: () => undefined }),
    },
  };
}

/** The text of the PEM file a TLS parameter names, or undefined when it names none. */
function readPem(parameter: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      `DATABASE_URL ${parameter} cannot be read: ${JSON.stringify(path)}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
}

/**
 * Opens a pool to `url` (libpq form; TLS as {@linkcode databaseTls} maps it). `extra` adds or
 * overrides postgres.js options, its `connection` settings added to the defaults; a replication
 * connection made through here gets the same TLS. Throws ConfigError for unusable TLS settings.
 */
export function connectDatabase(
  url: string,
  maxConnections: number,
  extra: Partial<postgres.Options<never>> = {},
): Sql {
  const tls = databaseTls(url);
  return postgres(tls.url, {
    max: maxConnections,
    onnotice: () => {},
    connect_timeout: 5,
    idle_timeout: 60,
    ...(tls.ssl !== undefined && { ssl: tls.ssl }),
    ...extra,
    connection: { application_name: "cdc-pipeline", ...extra.connection },
  }) as unknown as Sql;
}

/**
 * Whether `error` is postgres.js 3.4.9's write to a connection that has just closed
 * (porsager/postgres#1154, #1208; denoland/deno#34667), uncaught outside any query after the
 * query it carried was rejected, which the sink retries as an outage. Two forms: a write to the
 * socket it has already dropped (a TypeError from its write timer; no error code to go by, so its
 * signature is matched), and a write after the server's FIN, whose EPIPE node:net emits as an
 * error event after postgres.js has removed its listeners on the socket's close.
 */
export function isClosedConnectionWrite(error: unknown): boolean {
  if (!(error instanceof Error) || !/postgres/.test(error.stack ?? "")) return false;
  const droppedSocket = error instanceof TypeError && /\bwrite\b/.test(error.message) &&
    /\bnextWrite\b/.test(error.stack ?? "");
  return droppedSocket || (error as { code?: unknown }).code === "EPIPE";
}
