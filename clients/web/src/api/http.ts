/** The gateway over fetch: sync, snapshot, change feed, movement history and the live checkpoint stream. */
import { ROUTES, fillPath } from "./routes";
import type { ChangeFeedPage, MovementPage, Operation, SnapshotPage, SyncResponse } from "./types";

/** The request reached the gateway and it answered with an error (``{code, message}``). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds the server asked us to wait (``Retry-After``), when it said. */
    readonly retryAfterSeconds: number | null,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/** No answer: offline, refused, cut mid-way. Always safe to retry with the same operation ids. */
export class TransportError extends Error {
  override name = "TransportError";
}

/** What the sync engine and the screens need from the server; tests give a fake. */
export interface Gateway {
  /** ``200`` and ``202`` both carry one result per operation. */
  sync(checkpoint: string | null, operations: Operation[]): Promise<SyncResponse>;
  changes(checkpoint: string | null): Promise<ChangeFeedPage>;
  /** One page of a first download (``cursor`` null for the first page); ``409 RESET_REQUIRED`` on a later one: start again. */
  snapshot(cursor: string | null): Promise<SnapshotPage>;
  movements(productId: string, cursor: string | null): Promise<MovementPage>;
}

export type TokenSource = () => string | null;

function retryAfter(response: Response): number | null {
  const value = response.headers.get("Retry-After");
  if (value === null) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

async function failure(response: Response): Promise<HttpError> {
  let code = "HTTP_" + response.status;
  let message = response.statusText || "request failed";
  try {
    const body = (await response.json()) as { code?: unknown; message?: unknown };
    if (typeof body.code === "string") code = body.code;
    if (typeof body.message === "string") message = body.message;
  } catch {
    // Not the error shape (a proxy's page, say): keep the status line.
  }
  return new HttpError(response.status, code, message, retryAfter(response));
}

/** The gateway at ``baseUrl`` (the page's origin in the app), authenticated by ``token()``. */
export class HttpGateway implements Gateway {
  constructor(
    private readonly baseUrl: string,
    private readonly token: TokenSource,
    private readonly fetchImpl: typeof fetch = (...args) => fetch(...args),
  ) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const token = this.token();
    return token ? { Authorization: `Bearer ${token}`, ...extra } : extra;
  }

  private async request<T>(path: string, init: RequestInit = {}): Promise<T> {
    let response: Response;
    try {
      response = await this.fetchImpl(this.baseUrl + path, { ...init, cache: "no-store" });
    } catch (error) {
      throw new TransportError(error instanceof Error ? error.message : String(error));
    }
    if (response.status === 200 || response.status === 202) {
      try {
        return (await response.json()) as T;
      } catch (error) {
        throw new TransportError("the answer was cut off: " + String(error));
      }
    }
    throw await failure(response);
  }

  sync(checkpoint: string | null, operations: Operation[]): Promise<SyncResponse> {
    return this.request<SyncResponse>(ROUTES.sync, {
      method: "POST",
      headers: this.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ checkpoint, operations }),
    });
  }

  changes(checkpoint: string | null): Promise<ChangeFeedPage> {
    const query = new URLSearchParams({ limit: "1000" });
    if (checkpoint !== null) query.set("checkpoint", checkpoint);
    return this.request<ChangeFeedPage>(`${ROUTES.changes}?${query}`, { headers: this.headers() });
  }

  snapshot(cursor: string | null): Promise<SnapshotPage> {
    const query = new URLSearchParams({ limit: "500" });
    if (cursor !== null) query.set("cursor", cursor);
    return this.request<SnapshotPage>(`${ROUTES.snapshot}?${query}`, { headers: this.headers() });
  }

  movements(productId: string, cursor: string | null): Promise<MovementPage> {
    const query = new URLSearchParams({ limit: "30" });
    if (cursor !== null) query.set("cursor", cursor);
    return this.request<MovementPage>(`${fillPath(ROUTES.movements, { product_id: productId })}?${query}`, {
      headers: this.headers(),
    });
  }

  /**
   * Listen to the tenant's live checkpoint announcements until ``signal`` aborts. ``onEvent`` gets
   * ``ready`` when the stream opens and ``checkpoint`` for each commit. Resolves when the stream
   * ends; rejects on an error. Reconnecting is the caller's job (see ``LiveUpdates``).
   *
   * fetch rather than ``EventSource``: only fetch can send the ``Authorization`` header, and a token
   * must never travel in a URL.
   */
  async stream(onEvent: (kind: string, data: string) => void, signal: AbortSignal): Promise<void> {
    let response: Response;
    try {
      response = await this.fetchImpl(this.baseUrl + ROUTES.stream, {
        headers: this.headers({ Accept: "text/event-stream" }),
        cache: "no-store",
        signal,
      });
    } catch (error) {
      throw new TransportError(String(error));
    }
    if (response.status !== 200 || response.body === null) throw await failure(response);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new EventStreamParser(onEvent);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.push(value);
    }
  }
}

/**
 * The text/event-stream format (WHATWG HTML §9.2): events are blocks of ``field: value`` lines
 * separated by a blank line; lines starting with ``:`` are comments. Written here because the
 * parsers on npm either wrap ``EventSource`` (no headers) or bring their own fetch client.
 */
export class EventStreamParser {
  private buffer = "";

  constructor(private readonly onEvent: (kind: string, data: string) => void) {}

  push(chunk: string): void {
    this.buffer += chunk.replace(/\r\n?/g, "\n");
    let end: number;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      this.dispatch(block);
    }
  }

  private dispatch(block: string): void {
    let kind = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") kind = value;
      else if (field === "data") data.push(value);
    }
    // An event without a data line is not dispatched (WHATWG HTML §9.2.6: "If the data buffer is an
    // empty string, ... return"), whatever its type.
    if (data.length > 0) this.onEvent(kind, data.join("\n"));
  }
}
