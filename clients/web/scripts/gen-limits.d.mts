/** The text of src/api/limits.ts for the OpenAPI document at ``openapiUrl``. */
export function render(openapiUrl: URL): Promise<string>;
