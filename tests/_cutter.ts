/**
 * A TCP relay in front of the real PostgreSQL that cuts every connection when a client sends a
 * chosen statement, as PostgreSQL stopping mid-step would look to the client, and then refuses
 * connections for a while. The tests arm one cut per step (the slot query, the catalog read, the
 * snapshot cursor, the replication stream); each fires once.
 * @module
 */

/** A cut to make once: when a client's bytes contain `statement`, after `afterServerBytes` more bytes came back. */
export interface Cut {
  /** A name for messages. */
  name: string;
  /** Text of the client's message that arms the cut (a statement, a replication command). */
  statement: string;
  /** Bytes the server sends on that connection after the statement before the cut; 0 cuts at once. */
  afterServerBytes?: number;
  /** Milliseconds the relay then refuses connections. @default 1500 */
  downMs?: number;
}

const latin1 = new TextDecoder("latin1");

/** The relay: listens on a port below 32768, forwards to `target`, and makes the armed cuts. */
export class ConnectionCutter {
  readonly fired: string[] = [];
  #listener: Deno.Listener | undefined;
  #pending: Cut[] = [];
  #connections = new Set<Deno.Conn>();
  #closed = false;

  private constructor(readonly port: number, readonly target: { hostname: string; port: number }) {}

  /** Starts a relay to `target` on a free port in 21000..31999. */
  static start(target: { hostname: string; port: number }): ConnectionCutter {
    for (let tries = 0; tries < 50; tries++) {
      const port = 21_000 + Math.floor(Math.random() * 11_000);
      try {
        const cutter = new ConnectionCutter(port, target);
        cutter.#listen();
        return cutter;
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse)) throw error;
      }
    }
    throw new Error("no free port below 32768 for the connection cutter");
  }

  /** Arms `cuts`; each fires once, in any order. */
  arm(...cuts: Cut[]): void {
    this.#pending.push(...cuts);
  }

  /** Cuts every connection now and refuses new ones for `downMs`. */
  cutNow(name: string, downMs: number): void {
    this.#fire({ name, statement: "", downMs });
  }

  /** Stops relaying and closes every connection. */
  close(): void {
    this.#closed = true;
    this.#dropAll();
  }

  #listen(): void {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: this.port });
    this.#accept(this.#listener);
  }

  async #accept(listener: Deno.Listener): Promise<void> {
    try {
      for await (const client of listener) this.#relay(client).catch(() => {});
    } catch {
      // The listener was closed for a cut or at the end.
    }
  }

  async #relay(client: Deno.Conn): Promise<void> {
    const server = await Deno.connect(this.target);
    this.#connections.add(client).add(server);
    const armed: { cut: Cut | undefined; served: number } = { cut: undefined, served: 0 };
    const toServer = this.#pipe(client, server, (chunk) => {
      armed.cut ??= this.#take(latin1.decode(chunk));
      if (armed.cut && !armed.cut.afterServerBytes) this.#fire(armed.cut);
    });
    const toClient = this.#pipe(server, client, (chunk) => {
      if (!armed.cut) return;
      armed.served += chunk.length;
      if (armed.served >= (armed.cut.afterServerBytes ?? 0)) this.#fire(armed.cut);
    });
    await Promise.allSettled([toServer, toClient]);
    for (const conn of [client, server]) {
      this.#connections.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed by the other direction or a cut.
      }
    }
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, watch: (chunk: Uint8Array) => void): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) return;
      const chunk = buffer.subarray(0, n);
      watch(chunk);
      if (!this.#connections.has(to)) return;
      let written = 0;
      while (written < n) written += await to.write(chunk.subarray(written));
    }
  }

  /** The first pending cut whose statement is in `text`, removed from the pending ones. */
  #take(text: string): Cut | undefined {
    const index = this.#pending.findIndex((cut) => text.includes(cut.statement));
    return index < 0 ? undefined : this.#pending.splice(index, 1)[0];
  }

  /** Cuts every connection and refuses new ones for the cut's `downMs`, once per cut. */
  #fire(cut: Cut): void {
    if (this.fired.includes(cut.name)) return;
    this.fired.push(cut.name);
    this.#listener?.close();
    this.#listener = undefined;
    this.#dropAll();
    setTimeout(() => this.#closed || this.#listen(), cut.downMs ?? 1_500);
  }

  #dropAll(): void {
    for (const conn of this.#connections) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    this.#connections.clear();
    if (this.#closed) this.#listener?.close();
  }
}
