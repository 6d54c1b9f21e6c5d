import { readFile } from "node:fs/promises";
import openapiTS, { astToString } from "openapi-typescript";
import { describe, expect, it } from "vitest";
import { render } from "../../scripts/gen-limits.mjs";

// The wire types are generated from the gateway's OpenAPI and committed, so the build needs no
// Python; this test (and tests/unit/gateway/test_openapi_dump.py for openapi.json) catches drift.
describe("generated wire types", () => {
  it("match src/api/openapi.json (run `npm run gen:api` after changing it)", async () => {
    const document = new URL("./openapi.json", import.meta.url);
    const generated = astToString(await openapiTS(document, { defaultNonNullable: false }));
    const committed = await readFile(new URL("./schema.d.ts", import.meta.url), "utf8");
    const strip = (text: string) => text.replace(/^\/\*\*[\s\S]*?\*\/\s*/, "").trim();
    expect(strip(committed)).toBe(strip(generated));
  });

  it("limits.ts matches src/api/openapi.json (run `npm run gen:api` after changing it)", async () => {
    const generated = await render(new URL("./openapi.json", import.meta.url));
    const committed = await readFile(new URL("./limits.ts", import.meta.url), "utf8");
    expect(committed).toBe(generated);
  });
});
