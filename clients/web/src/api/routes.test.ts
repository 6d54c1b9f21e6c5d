import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { ROUTES, STREAM_EVENTS, fillPath } from "./routes";

interface OpenApi {
  paths: Record<string, Record<string, { responses?: Record<string, { description?: string }> }>>;
}

async function openapi(): Promise<OpenApi> {
  return JSON.parse(await readFile(new URL("./openapi.json", import.meta.url), "utf8")) as OpenApi;
}

describe("routes", () => {
  it("are paths of the gateway's OpenAPI document", async () => {
    const document = await openapi();
    for (const path of Object.values(ROUTES)) expect(Object.keys(document.paths)).toContain(path);
  });

  it("fill their parameters, encoded", () => {
    expect(fillPath(ROUTES.movements, { product_id: "a/b" })).toBe("/api/products/a%2Fb/movements");
  });

  it("name the stream's events as the OpenAPI document describes them", async () => {
    const stream = (await openapi()).paths[ROUTES.stream]?.get;
    const described = stream?.responses?.["200"]?.description ?? "";
    for (const name of Object.values(STREAM_EVENTS)) expect(described).toContain(`\`event: ${name}\``);
  });
});
