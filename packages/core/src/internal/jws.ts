import { isUtf8 } from 'node:buffer'
import { isPlainObject } from './validate.js'

/** A JWS compact serialization: three strict base64url segments, checked in one pass over the text. */
export const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

// Value of each base64url character (RFC 4648 §5), by character code; 255 for anything else.
const VALUES = new Uint8Array(128).fill(255)
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('').forEach((char, value) => (VALUES[char.charCodeAt(0)] = value))

/**
 * True when `segment` is the one spelling of its bytes in base64url without padding (RFC 7515 §2,
 * RFC 4648 §3.5): no length of 1 mod 4, and the unused low bits of the last character zero. A
 * decoder ignores those bits, so without this check `...A` and `...B` would be the same signature
 * (or key coordinate) spelled twice. Assumes the characters are base64url (see {@link COMPACT_JWS}).
 */
export function isCanonicalBase64url(segment: string): boolean {
  const rest = segment.length % 4
  if (rest === 0) return true
  if (rest === 1) return false
  const last = VALUES[segment.charCodeAt(segment.length - 1)] ?? 255
  // 2 characters carry 8 bits (4 unused), 3 characters carry 16 bits (2 unused).
  return last !== 255 && (last & (rest === 2 ? 0x0f : 0x03)) === 0
}

const BASE64URL = /^[A-Za-z0-9_-]+$/

/** The octets of a non-empty canonical base64url string (the one spelling of its value: see {@link isCanonicalBase64url}), else `undefined`. */
export function canonicalOctets(value: unknown): Buffer | undefined {
  return typeof value === 'string' && BASE64URL.test(value) && isCanonicalBase64url(value) ? Buffer.from(value, 'base64url') : undefined
}

/**
 * The three segments of a compact JWS, each canonical base64url; `undefined` otherwise. `known`:
 * the caller already matched `value` against {@link COMPACT_JWS} (one pass over the text is enough).
 */
export function jwsSegments(value: string, known = false): [header: string, payload: string, signature: string] | undefined {
  if (!known && !COMPACT_JWS.test(value)) return undefined
  const parts = value.split('.') as [string, string, string]
  return isCanonicalBase64url(parts[0]) && isCanonicalBase64url(parts[1]) && isCanonicalBase64url(parts[2]) ? parts : undefined
}

/**
 * A JWS part (of a token known to match {@link COMPACT_JWS}) decoded as a JSON object: what jose's
 * `decodeProtectedHeader` / `decodeJwt` accept, without their per-character base64 decode.
 * Throws on a length no base64 encoding has, malformed UTF-8, bad JSON, or a non-object.
 * Like jose's decoder (WHATWG `TextDecoder`, fatal), malformed UTF-8 is refused and a leading byte
 * order mark skipped; `isUtf8` plus `toString` does that in two thirds of the decoder's time.
 */
export function decodeJsonObject(part: string): Record<string, unknown> {
  if (part.length % 4 === 1) throw new TypeError('invalid base64url')
  const bytes = Buffer.from(part, 'base64url')
  if (!isUtf8(bytes)) throw new TypeError('invalid UTF-8')
  const value: unknown = JSON.parse(bytes.toString('utf8', bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0))
  if (!isPlainObject(value)) throw new TypeError('not a JSON object')
  return value
}
