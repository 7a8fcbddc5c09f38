/**
 * SPIFFE IDs and caller patterns.
 *
 * Validation follows the SPIFFE ID specification (§2): scheme `spiffe` in lower case, a trust
 * domain of `[a-z0-9._-]`, a path of segments of `[A-Za-z0-9._-]` with no empty, `.` or `..`
 * segment and no trailing slash, no query, fragment, port or user info, at most 2048 bytes.
 */

import type { X509Certificate } from 'node:crypto'
import { parseSubjectAltName } from './internal/subject-alt-name.js'
import { fail } from './internal/validate.js'

const TRUST_DOMAIN = /^[a-z0-9._-]+$/
const SEGMENT = /^[A-Za-z0-9._-]+$/
const MAX_SPIFFE_ID_LENGTH = 2048

/** A parsed SPIFFE ID. */
export interface SpiffeId {
  /** The whole ID, e.g. `spiffe://example.org/ns/orders/sa/api`. */
  id: string
  trustDomain: string
  /** Path segments, e.g. `['ns', 'orders', 'sa', 'api']`; empty for a trust-domain ID. */
  segments: string[]
}

/**
 * Parse a SPIFFE ID strictly; returns `undefined` for anything the spec does not allow.
 *
 * @example parseSpiffeId('spiffe://example.org/ns/a') // { trustDomain: 'example.org', segments: ['ns','a'], ... }
 */
export function parseSpiffeId(value: string): SpiffeId | undefined {
  if (typeof value !== 'string' || value.length > MAX_SPIFFE_ID_LENGTH || !value.startsWith('spiffe://')) return undefined
  const rest = value.slice('spiffe://'.length)
  const slash = rest.indexOf('/')
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash)
  if (trustDomain.length === 0 || trustDomain.length > 255 || !TRUST_DOMAIN.test(trustDomain)) return undefined
  if (slash === -1) return { id: value, trustDomain, segments: [] }
  const segments = rest.slice(slash + 1).split('/')
  for (const segment of segments) {
    if (!SEGMENT.test(segment) || segment === '.' || segment === '..') return undefined
  }
  return { id: value, trustDomain, segments }
}

/** True when `value` is a SPIFFE trust domain name (`example.org`): what a `spiffe://` ID may start with. */
export const isTrustDomainName = (value: unknown): value is string => typeof value === 'string' && parseSpiffeId(`spiffe://${value}`)?.trustDomain === value

/** True when `value` is a valid SPIFFE ID with a non-empty path (a workload, not a trust domain). */
export const isWorkloadSpiffeId = (value: string): boolean => (parseSpiffeId(value)?.segments.length ?? 0) > 0

/**
 * The SPIFFE ID a certificate names, for a client checking the server it called: the `spiffe://`
 * URI SAN when exactly one URI SAN is a SPIFFE ID and it is a valid workload ID (a path after the
 * trust domain); `undefined` otherwise (none, several, a malformed one, or SANs that cannot be read
 * unambiguously). Other URI SANs are ignored.
 *
 * Not checked: the chain, validity dates or key usages (the TLS handshake and its `ca` do that); and
 * none of the client-leaf rules of `describeCertificate` (a server certificate has serverAuth).
 * @example
 * const id = spiffeIdOfCertificate(socket.getPeerX509Certificate()!) // 'spiffe://example.org/ns/orders/sa/api'
 */
export function spiffeIdOfCertificate(certificate: X509Certificate): string | undefined {
  const sans = parseSubjectAltName(certificate.subjectAltName)
  if (!sans) return undefined
  // Counted case-insensitively, as describeCertificate does: `SPIFFE://...` is a malformed SPIFFE ID, not another URI.
  const spiffeUris = sans.filter(([type, value]) => type === 'URI' && value.toLowerCase().startsWith('spiffe:'))
  if (spiffeUris.length !== 1) return undefined
  const parsed = parseSpiffeId(spiffeUris[0]![1])
  return parsed && parsed.segments.length > 0 ? parsed.id : undefined
}

/**
 * A compiled caller pattern: an exact SPIFFE ID, a SPIFFE prefix ending in `/*`, or
 * (for callers identified by an OAuth client id rather than a certificate) an exact client id.
 */
export interface CallerPattern {
  readonly source: string
  matches(callerId: string): boolean
}

/**
 * Compile a caller pattern; throws `TypeError` naming `optionName` if it is invalid.
 *
 * - `spiffe://example.org/ns/batch/sa/worker`: exactly that ID;
 * - `spiffe://example.org/ns/batch/*`: any ID with at least one more segment under that path,
 *   matched on segment boundaries (`/ns/batch-evil/x` never matches);
 * - `spiffe://example.org/*`: any workload in the trust domain;
 * - `orders-client`: exactly that client id (no wildcards outside SPIFFE IDs).
 */
export function compileCallerPattern(pattern: string, optionName: string): CallerPattern {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    fail(optionName, 'must be a non-empty string: a SPIFFE ID, a SPIFFE prefix ending in "/*", or a client id')
  }
  if (pattern.startsWith('spiffe://')) {
    const isPrefix = pattern.endsWith('/*')
    const parsed = parseSpiffeId(isPrefix ? pattern.slice(0, -2) : pattern)
    if (!parsed || (!isPrefix && parsed.segments.length === 0)) {
      return fail(
        optionName,
        `(${JSON.stringify(pattern)}) is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*`,
      )
    }
    if (!isPrefix) {
      return { source: pattern, matches: (callerId) => callerId === pattern }
    }
    const prefix = `${parsed.id}/`
    return {
      source: pattern,
      // Segment boundary: the prefix includes the trailing slash, and the rest must be a valid path.
      matches: (callerId) => callerId.length > prefix.length && callerId.startsWith(prefix) && isWorkloadSpiffeId(callerId),
    }
  }
  if (/^spiffe:/i.test(pattern)) {
    fail(optionName, `(${JSON.stringify(pattern)}): SPIFFE IDs start with a lower-case "spiffe://"`)
  }
  if (pattern.includes('*')) {
    fail(optionName, `(${JSON.stringify(pattern)}): wildcards are only allowed as a trailing "/*" of a SPIFFE ID`)
  }
  return { source: pattern, matches: (callerId) => callerId === pattern }
}
