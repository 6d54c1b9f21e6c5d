/**
 * The gateway's routes and the live stream's event names, taken from the generated schema
 * (``schema.d.ts``, from the gateway's OpenAPI): a path the schema does not have fails the type check,
 * so a renamed route breaks the build instead of the app.
 */
import type { paths } from "./schema";

export type ApiPath = keyof paths;

export const ROUTES = {
  sync: "/api/sync",
  changes: "/api/sync/changes",
  snapshot: "/api/sync/snapshot",
  stream: "/api/sync/stream",
  movements: "/api/products/{product_id}/movements",
} as const satisfies Record<string, ApiPath>;

/** The names in a path's braces, as the schema spells them (``product_id``). */
type PathParams<P extends string> = P extends `${string}{${infer Name}}${infer Rest}` ? Name | PathParams<Rest> : never;

/** ``path`` with each ``{name}`` replaced by its value, encoded. */
export function fillPath<P extends ApiPath>(path: P, params: Record<PathParams<P>, string>): string {
  const values = params as Record<string, string>;
  return path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no value for {${name}} in ${path}`);
    return encodeURIComponent(value);
  });
}

/**
 * The ``event:`` names of the live stream. The OpenAPI document gives them only in the stream's
 * description (server-sent events have no schema there), so TypeScript cannot check them; a unit test
 * reads them back from ``openapi.json`` instead (``routes.test.ts``).
 */
export const STREAM_EVENTS = {
  /** Once, when the stream listens: anything committed before it is in the feed. */
  ready: "ready",
  /** ``{"checkpoint": "..."}`` each time the tenant's changes commit. */
  checkpoint: "checkpoint",
} as const;

export type StreamEvent = (typeof STREAM_EVENTS)[keyof typeof STREAM_EVENTS];
