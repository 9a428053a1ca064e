/**
 * The project's version, read from deno.json at build time so the binaries carry it too.
 * @module
 */
import manifest from "../deno.json" with { type: "json" };

/** Version of cdc-pipeline, from deno.json. */
export const VERSION: string = manifest.version;
