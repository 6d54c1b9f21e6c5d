/** Live updates: keep the checkpoint stream open while online, and sync when it says so. */
import { HttpError, type HttpGateway } from "../api/http";
import { STREAM_EVENTS } from "../api/routes";
import { DEFAULT_BACKOFF, backoffDelay } from "./backoff";

export class LiveUpdates {
  private controller: AbortController | null = null;
  private failures = 0;
  private retry: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly gateway: Pick<HttpGateway, "stream">,
    /** A new checkpoint was announced: pull. */
    private readonly onChange: () => void,
    /** The stream is listening (the server answers): pull once to catch what committed before it opened. */
    private readonly onOpen: () => void = onChange,
  ) {}

  /** Open the stream (again); a stream already open is kept. */
  start(): void {
    if (this.controller) return;
    const controller = new AbortController();
    this.controller = controller;
    this.gateway
      .stream((kind) => {
        this.failures = 0;
        if (kind === STREAM_EVENTS.ready) this.onOpen();
        else if (kind === STREAM_EVENTS.checkpoint) this.onChange();
      }, controller.signal)
      .catch((error: unknown) => {
        if (error instanceof HttpError && error.status === 401) this.failures = 100; // wait long: signed out
      })
      .finally(() => {
        if (this.controller !== controller) return;
        this.controller = null;
        if (controller.signal.aborted) return;
        // Dropped (network, proxy, gateway restart): reconnect with backoff; the periodic pull covers the gap.
        this.failures += 1;
        this.retry = setTimeout(() => this.start(), backoffDelay(this.failures, DEFAULT_BACKOFF));
      });
  }

  stop(): void {
    if (this.retry !== null) clearTimeout(this.retry);
    this.retry = null;
    const controller = this.controller;
    this.controller = null;
    controller?.abort();
  }
}
