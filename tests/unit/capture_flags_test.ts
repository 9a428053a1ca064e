/** The capture's throughput and memory flags: schemas, compression, sends in flight and the bytes they may hold. */
import assert from "node:assert/strict";
import { ConfigError, DEFAULTS, loadCaptureConfig } from "../../lib/config.ts";

function config(args: string[], env: Record<string, string> = {}) {
  const parsed = loadCaptureConfig(args, env);
  if (parsed.help) throw new Error("unexpected --help");
  return parsed.config;
}

Deno.test("by default the capture writes schemas, gzips its batches and keeps 1 send and 4 MiB in flight", () => {
  const { schemas, compression, inFlight, inFlightBytes } = config([]);
  assert.deepEqual({ schemas, compression, inFlight, inFlightBytes }, {
    schemas: true,
    compression: "gzip",
    inFlight: 1,
    inFlightBytes: DEFAULTS.captureInFlightBytes,
  });
  assert.equal(DEFAULTS.captureInFlightBytes, 4 * 1024 * 1024);
});

Deno.test("--schemas=false, --compression=none, --in-flight and --in-flight-bytes are read from flags before CAPTURE_* variables", () => {
  const env = { CAPTURE_SCHEMAS: "true", CAPTURE_COMPRESSION: "gzip", CAPTURE_IN_FLIGHT: "2" };
  const c = config(["--schemas=false", "--compression=none", "--in-flight=1", "--in-flight-bytes=2097152"], env);
  assert.deepEqual([c.schemas, c.compression, c.inFlight, c.inFlightBytes], [false, "none", 1, 2_097_152]);
  const fromEnv = config([], { CAPTURE_SCHEMAS: "false", CAPTURE_IN_FLIGHT: "2", CAPTURE_IN_FLIGHT_BYTES: "4194304" });
  assert.deepEqual([fromEnv.schemas, fromEnv.inFlight, fromEnv.inFlightBytes], [false, 2, 4_194_304]);
});

Deno.test("a schemas or compression value outside its choices, and in-flight limits out of range, are refused in one line", () => {
  assert.throws(
    () => config(["--schemas=no"]),
    (e: Error) => e instanceof ConfigError && /--schemas.*true, false/.test(e.message),
  );
  assert.throws(
    () => config(["--compression=zstd"]),
    /--compression \(or CAPTURE_COMPRESSION\) must be one of none, gzip/,
  );
  assert.throws(() => config(["--in-flight=0"]), /--in-flight \(or CAPTURE_IN_FLIGHT\) must be an integer in 1..64/);
  assert.throws(() => config(["--in-flight-bytes=1000"]), /--in-flight-bytes .* must be an integer >= 1048576/);
});
