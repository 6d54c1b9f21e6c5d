import { describe, expect, it } from "vitest";
import { EventStreamParser, HttpError, HttpGateway, TransportError } from "./http";

describe("EventStreamParser", () => {
  it("splits events across chunks, skips comments, joins data lines", () => {
    const events: [string, string][] = [];
    const parser = new EventStreamParser((kind, data) => events.push([kind, data]));
    parser.push("retry: 3000\nevent: ready\ndata: {}\n\n: heartbeat\n\nevent: check");
    parser.push('point\r\ndata: {"checkpoint":\r\ndata: "7"}\r\n\r\n');
    expect(events).toEqual([
      ["ready", "{}"],
      ["checkpoint", '{"checkpoint":\n"7"}'],
    ]);
  });

  it("does not dispatch an event without a data line, whatever its type", () => {
    const events: [string, string][] = [];
    const parser = new EventStreamParser((kind, data) => events.push([kind, data]));
    parser.push("event: checkpoint\n\nevent: ready\nid: 4\n\nevent: ready\ndata:\n\n");
    expect(events).toEqual([["ready", ""]]);
  });
});

describe("HttpGateway", () => {
  const answer = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    (async () => new Response(JSON.stringify(body), { status, headers })) as typeof fetch;

  it("sends the token in the Authorization header, never in the URL", async () => {
    const seen: [string, Headers][] = [];
    const recording = (async (url: string | URL | Request, init?: RequestInit) => {
      seen.push([url instanceof Request ? url.url : url.toString(), new Headers(init?.headers)]);
      return new Response(JSON.stringify({ checkpoint: "1", hasMore: false, changes: [] }), { status: 200 });
    }) as typeof fetch;
    await new HttpGateway("http://gw", () => "secret-token", recording).changes("5");
    expect(seen[0]![0]).toBe("http://gw/api/sync/changes?limit=1000&checkpoint=5");
    expect(seen[0]![1].get("Authorization")).toBe("Bearer secret-token");
    expect(seen[0]![0]).not.toContain("secret-token");
  });

  it("asks for a snapshot page by its cursor, 500 products a page", async () => {
    const seen: string[] = [];
    const recording = (async (url: string | URL | Request) => {
      seen.push(url instanceof Request ? url.url : url.toString());
      return new Response(JSON.stringify({ checkpoint: "9", items: [], nextCursor: null, totalProducts: 0 }), { status: 200 });
    }) as typeof fetch;
    const gateway = new HttpGateway("http://gw", () => "t", recording);
    expect(await gateway.snapshot(null)).toEqual({ checkpoint: "9", items: [], nextCursor: null, totalProducts: 0 });
    await gateway.snapshot("abc/+=");
    expect(seen).toEqual(["http://gw/api/sync/snapshot?limit=500", "http://gw/api/sync/snapshot?limit=500&cursor=abc%2F%2B%3D"]);
  });

  it("turns an error answer into its code, message and Retry-After", async () => {
    const gateway = new HttpGateway("", () => "t", answer(429, { code: "RATE_LIMITED", message: "slow down" }, { "Retry-After": "7" }));
    const error = await gateway.sync(null, []).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpError);
    expect(error).toMatchObject({ status: 429, code: "RATE_LIMITED", message: "slow down", retryAfterSeconds: 7 });
  });

  it("reports no answer at all as a transport error", async () => {
    const failing = (async () => {
      throw new TypeError("Failed to fetch");
    }) as typeof fetch;
    await expect(new HttpGateway("", () => "t", failing).changes(null)).rejects.toBeInstanceOf(TransportError);
  });
});
