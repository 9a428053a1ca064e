/**
 * A client that can never talk to its Kafka listener stops instead of waiting forever
 * (lib/kafka_listener.ts): produce, consume and capture without SASL settings at the broker's SASL
 * listener, and consume in plaintext at a TLS listener, each end with one line naming the likely
 * cause and the settings; a refused connection is still waited out.
 */
import assert from "node:assert/strict";
import {
  BROKERS,
  createTestDatabase,
  freePortRange,
  killLeftovers,
  pipelineNames,
  type Running,
  runProgram,
  type RunResult,
  startCommand,
  stopWithin,
  waitFor,
} from "./_helpers.ts";
import { captureNames, dropCaptureAndDatabase } from "./_capture.ts";
import { oneLine } from "./_output.ts";

/** The SASL listener of the shared broker: its port + 2, as scripts/services.sh opens it. */
async function saslListener(): Promise<string> {
  const [host, port] = BROKERS[0].split(":");
  const address = `${host}:${Number(port) + 2}`;
  const connection = await Deno.connect({ hostname: host, port: Number(port) + 2 }).catch(() => undefined);
  assert.ok(connection, `nothing listens at ${address}: start the services with scripts/services.sh up kafka`);
  connection.close();
  return address;
}

/**
 * A TLS listener that completes no Kafka request: a plaintext request is no TLS handshake, so each
 * connection is accepted, then closed unanswered. Its certificate is made with openssl for the test.
 */
async function tlsListener(): Promise<{ address: string; accepted: () => number; close: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "cdc-kafka-tls-" });
  const made = await runProgram("openssl", [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"],
    ...["-keyout", "key.pem", "-out", "cert.pem"],
  ], { cwd: dir });
  assert.equal(made.code, 0, made.stderr);
  const port = freePortRange(1);
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port,
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  });
  let accepted = 0;
  const serving = (async () => {
    for await (const connection of listener) {
      accepted++;
      connection.handshake().catch(() => {}).finally(() => {
        try {
          connection.close();
        } catch { /* closed by the failed handshake already */ }
      });
    }
  })().catch(() => {});
  return {
    address: `127.0.0.1:${port}`,
    accepted: () => accepted,
    close: async () => {
      listener.close();
      await serving;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** The stop line of a client at a listener it cannot speak to. */
const LISTENER_LINE =
  /failed: KafkaListenerError: Kafka at \S+ accepted the connection and closed it unanswered at \d+ attempts over (\d+) s: likely a SASL or TLS listener; set KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, or KAFKA_TLS=true/;

Deno.test("without the listener's SASL or TLS settings produce, consume and capture stop with one line naming them; a refused connection is still waited out", async () => {
  const sasl = await saslListener();
  const tls = await tlsListener();
  const db = await createTestDatabase();
  const env = { ...pipelineNames(db.url), ...captureNames() };
  const refusedPort = freePortRange(1);
  const started = Date.now();
  const runs: Record<string, Running> = {
    "produce at the SASL listener": startCommand("produce", ["--users", "5", "--orders", "5"], {
      ...env,
      KAFKA_BROKERS: sasl,
    }),
    "consume at the SASL listener": startCommand("consume", [], { ...env, KAFKA_BROKERS: sasl }),
    "capture at the SASL listener": startCommand("produce", ["capture"], { ...env, KAFKA_BROKERS: sasl }),
    "consume at a TLS listener": startCommand("consume", [], { ...env, KAFKA_BROKERS: tls.address }),
  };
  const refused = startCommand("consume", [], { ...env, KAFKA_BROKERS: `127.0.0.1:${refusedPort}` });
  const ended = new Map<string, { result: RunResult; seconds: number }>();
  for (const [name, run] of Object.entries(runs)) {
    run.done.then((result) => ended.set(name, { result, seconds: (Date.now() - started) / 1000 }));
  }
  let refusedEnded = false;
  refused.done.then(() => (refusedEnded = true));
  try {
    await waitFor("every client at a listener it cannot speak to to stop", () => ended.size === 4, 90_000, 250);
    for (const [name, { result, seconds }] of ended) {
      assert.equal(result.code, 1, `${name}:\n${result.stderr}`);
      const line = oneLine(result, LISTENER_LINE, name);
      const lasted = Number(LISTENER_LINE.exec(line)![1]);
      // The waits of consume and capture have no budget: only 30 s of closes stop them. The
      // producer's budget (8 attempts) mostly ends sooner, on closes alone, and names the cause too.
      const byBudget = name.startsWith("produce") && /at 8 attempts/.test(line);
      assert.ok(byBudget || lasted >= 30, `${name} stopped after ${lasted} s of closes: ${line}`);
      assert.ok(seconds < 60, `${name} took ${seconds} s`);
    }
    assert.ok(tls.accepted() > 1, "the TLS listener accepted the consumer's connections");
    assert.equal(refusedEnded, false, `consume at a refused port stopped:\n${refused.stderr()}`);
    assert.match(refused.stderr(), /waiting for Kafka .*ECONNREFUSED/);
    assert.doesNotMatch(refused.stderr(), /KafkaListenerError/);
    const stopped = await stopWithin(refused);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await killLeftovers(...Object.values(runs), refused);
    await tls.close();
    await dropCaptureAndDatabase(db, env);
  }
});
