import { randomBytes } from 'node:crypto'

/**
 * Generates a random, positive 128-bit certificate serial number
 * (RFC 5280 §4.1.2.2 allows up to 20 octets).
 *
 * @returns Lower-case hexadecimal serial number, always 32 characters long.
 * @example
 * ```ts
 * const serial = randomSerialNumber(); // e.g. '5f3a…'
 * ```
 * @internal
 */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16)
  // Clear the sign bit (positive INTEGER) and set the next one (no leading zero octet).
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40
  return bytes.toString('hex')
}
