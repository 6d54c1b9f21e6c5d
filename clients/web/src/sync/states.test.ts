import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { CONTRACT_CODES, refusesTheBatch, stateOf, type StateFacts } from "./states";

const synced: StateFacts = {
  platformOnline: true,
  unreachable: false,
  unauthorized: false,
  failuresInRow: 0,
  stuck: 0,
  running: false,
  queued: 0,
  waitingToSnapshot: false,
  synced: true,
};

describe("stateOf (docs/sync-states.md)", () => {
  it.each<[string, string, Partial<StateFacts>]>([
    ["synced, nothing queued", "upToDate", {}],
    ["no sync yet", "syncing", { synced: false }],
    ["a sync running", "syncing", { running: true }],
    ["changes queued", "syncing", { queued: 2 }],
    ["a snapshot waiting for a movement in doubt", "syncing", { waitingToSnapshot: true }],
    ["two failures in a row", "syncing", { failuresInRow: 2, synced: false }],
    ["three failures in a row", "error", { failuresInRow: 3, synced: false }],
    ["401", "error", { unauthorized: true, failuresInRow: 1 }],
    ["a change stuck", "error", { stuck: 1, queued: 1 }],
    ["the platform offline, even failing", "offline", { platformOnline: false, failuresInRow: 5 }],
    ["no answer while the platform is online", "offline", { unreachable: true, queued: 1 }],
  ])("%s: %s", (_name, state, facts) => {
    expect(stateOf({ ...synced, ...facts })).toBe(state);
  });
});

describe("refusesTheBatch", () => {
  it("is any 4xx but 401, 408, 409 and 429", () => {
    expect([400, 404, 413, 415, 422].map((status) => refusesTheBatch(status, "VALIDATION_ERROR"))).toEqual([true, true, true, true, true]);
    expect([401, 408, 409, 429, 500, 503, 200].map((status) => refusesTheBatch(status, "VALIDATION_ERROR"))).toEqual([
      false, false, false, false, false, false, false,
    ]);
  });

  it("takes a 4xx without the contract's code (a proxy's page) as temporary", () => {
    expect(refusesTheBatch(403, "HTTP_403")).toBe(false);
    expect(refusesTheBatch(404, "HTTP_404")).toBe(false);
    expect(refusesTheBatch(422, "SOMETHING_ELSE")).toBe(false);
  });

  it("knows the contract's codes, as the OpenAPI schema lists them", () => {
    const schema = JSON.parse(readFileSync(new URL("../api/openapi.json", import.meta.url), "utf8")) as {
      components: { schemas: { Code: { enum: string[] } } };
    };
    expect([...CONTRACT_CODES].sort()).toEqual([...schema.components.schemas.Code.enum].sort());
  });
});
