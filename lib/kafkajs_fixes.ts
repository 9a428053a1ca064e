/**
 * Fixes for kafkajs 2.2.4 bugs that upstream has not released (its last release is from 2023),
 * applied to its classes once, when this module is first imported. lib/kafka_admin.ts imports it
 * where the client is created, so every command, test and binary that talks to Kafka runs with
 * them.
 * @module
 */
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";

/** Set on a patched method, naming what it fixes, so a test can tell that the fix is in place. */
export const KAFKAJS_FIX = Symbol.for("cdc-pipeline.kafkajs-fix");

/** Longest pause between two sweeps of a connection's in-flight requests for timeouts. */
export const REQUEST_TIMEOUT_SWEEP_MS = 1_000;

interface InFlight {
  sentAt: number;
  requestTimeout: number;
  timeoutRequest(): void;
}

/** The part of kafkajs' RequestQueue that the fixes read. */
interface Queue {
  pending: unknown[];
  inflight: Map<number, InFlight>;
  requestTimeout: number;
  enforceRequestTimeout: boolean;
  requestTimeoutIntervalId?: ReturnType<typeof setInterval>;
  isConnected(): boolean;
  destroy(): void;
}

type Method = ((this: Queue) => void) & { [KAFKAJS_FIX]?: string };

function patch(name: "scheduleCheckPendingRequests" | "scheduleRequestTimeoutCheck", fixes: string, method: Method) {
  if (RequestQueue.prototype[name][KAFKAJS_FIX]) return;
  method[KAFKAJS_FIX] = fixes;
  RequestQueue.prototype[name] = method;
}

/**
 * kafkajs' RequestQueue re-arms its pending-request check after every response even when no
 * request is pending, and then with a negative delay, so each broker connection runs the check
 * about once a millisecond for ever: an idle consumer burns CPU (tulios/kafkajs#1556; the fix
 * in the unmerged PR #1667 also skips it). The timer only serves queued requests, and `push()`
 * schedules it whenever it queues one, so skipping it while the queue is empty loses nothing.
 */
function skipIdlePendingCheck(): void {
  const original: Method = RequestQueue.prototype.scheduleCheckPendingRequests;
  patch("scheduleCheckPendingRequests", "tulios/kafkajs#1556", function () {
    if (this.pending.length > 0) original.call(this);
  });
}

/**
 * Each connection also sweeps its in-flight requests for timeouts every 100 ms, idle or not.
 * Requests here time out after 30 s or more (createKafka's requestTimeout), so a sweep once a
 * second times them out as surely and wakes an idle process ten times less. The body is
 * kafkajs 2.2.4's own with the period changed.
 */
function sweepRequestTimeoutsLessOften(): void {
  patch("scheduleRequestTimeoutCheck", "idle request-timeout sweep", function () {
    if (!this.enforceRequestTimeout) return;
    this.destroy();
    this.requestTimeoutIntervalId = setInterval(() => {
      this.inflight.forEach((request) => {
        if (Date.now() - request.sentAt > request.requestTimeout) request.timeoutRequest();
      });
      if (!this.isConnected()) this.destroy();
    }, Math.min(this.requestTimeout, REQUEST_TIMEOUT_SWEEP_MS));
  });
}

skipIdlePendingCheck();
sweepRequestTimeoutsLessOften();
