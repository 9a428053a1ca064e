/**
 * Small helpers the bench's modules and the capture's measuring scripts share.
 * @module
 */

/** UTF-8 bytes as a string. */
export function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `value` rounded to `digits` decimals. */
export function round(value: number, digits = 0): number {
  return Math.round(value * 10 ** digits) / 10 ** digits;
}

/** The URL of database `name` on the server of `adminUrl` (its user, host and parameters kept). */
export function databaseUrlFor(adminUrl: string, name: string): string {
  return adminUrl.replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
}
