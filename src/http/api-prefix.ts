/**
 * The REST API's path prefix. A leaf module: the API's routes are declared relative to it (the API scope is
 * registered with `{ prefix: API }`, app.ts); only what names a full path imports it (Location headers, the
 * OpenAPI paths, the plain-HTTP route list, the fail-closed net).
 */
export const API = '/api/v1';
