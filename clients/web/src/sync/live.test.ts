import { afterEach, describe, expect, it, vi } from "vitest";
import { HttpError } from "../api/http";
import { LiveUpdates } from "./live";

type StreamCall = { onEvent: (kind: string, data: string) => void; signal: AbortSignal; end: (error?: Error) => void };

/** A stream the test drives: each call is one connection, ended when the test says. */
function fakeStream() {
  const calls: StreamCall[] = [];
  const stream = (onEvent: StreamCall["onEvent"], signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      calls.push({ onEvent, signal, end: (error) => (error ? reject(error) : resolve()) });
      signal.addEventListener("abort", () => resolve());
    });
  return { calls, stream };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("LiveUpdates", () => {
  it("pulls when the stream opens and at each checkpoint, and reconnects with backoff when it drops", async () => {
    vi.useFakeTimers();
    const { calls, stream } = fakeStream();
    const onChange = vi.fn();
    const live = new LiveUpdates({ stream }, onChange);
    live.start();
    live.start(); // already open: no second connection
    expect(calls).toHaveLength(1);
    calls[0]!.onEvent("ready", "{}");
    calls[0]!.onEvent("checkpoint", '{"checkpoint":"9"}');
    calls[0]!.onEvent("message", "ignored");
    expect(onChange).toHaveBeenCalledTimes(2);

    const onOpen = vi.fn();
    const opening = new LiveUpdates({ stream }, onChange, onOpen);
    opening.start();
    calls[1]!.onEvent("ready", "{}");
    expect([onOpen.mock.calls.length, onChange.mock.calls.length]).toEqual([1, 2]); // "ready" tells the server answers
    opening.stop();
    calls.splice(1, 1);

    calls[0]!.end(new HttpError(503, "UNAVAILABLE", "restarting", null));
    await vi.runAllTimersAsync();
    expect(calls).toHaveLength(2);
    live.stop();
    expect(calls[1]!.signal.aborted).toBe(true);
    await vi.runAllTimersAsync();
    expect(calls).toHaveLength(2); // stopped: no reconnect
  });
});
