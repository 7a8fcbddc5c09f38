/**
 * The `services` option: each service the client calls, its URL, the resource and scopes its
 * tokens are asked for, and the SPIFFE ID its server certificate must carry.
 */
import { compileCallerPattern, type CallerPattern } from '@callsign/core'

/**
 * One entry of `services`.
 *
 * @example
 * orders: { url: 'https://orders.internal', scopes: ['orders:read'], spiffeId: 'spiffe://example.org/ns/orders/sa/orders' }
 */
export interface ServiceOptions {
  /**
   * Base URL of the service: `https://`, or `http://` on a loopback host only (127.0.0.1,
   * localhost, ::1). No query, fragment or credentials. Relative call URLs resolve against it
   * (WHATWG URL rules: `/orders` replaces the path, `orders` is resolved beside the last segment).
   */
  url: string | URL
  /** RFC 8707 resource indicator its tokens are asked for (an absolute URI, no fragment). Default: `url`, as written. */
  resource?: string
  /** Scopes asked for (RFC 6749 §3.3 scope tokens, no spaces). Default: none. */
  scopes?: readonly string[]
  /**
   * RFC 8693 `audience` values sent with each token request, beside `resource`: the logical name
   * of the service, for authorization servers that scope tokens by audience rather than by
   * resource indicator (Auth0's and Ory Hydra's client credentials, Keycloak's token exchange).
   * Default: none.
   */
  audience?: string | readonly string[]
  /**
   * The SPIFFE ID the server's certificate must carry, in the pattern syntax of `callers`: an
   * exact ID, or a prefix ending in `/*`. Checked on every new connection, before a request is
   * sent; a mismatch fails the call with `ServerIdentityError`. Default: only the host name is
   * checked (by TLS). Needs an `https` URL.
   */
  spiffeId?: string
  /**
   * At most this many connections to the service at once; further requests wait for a free one
   * (a burst of calls does not become a burst of TLS handshakes). Services at one origin share
   * their connections, and the smallest of their limits. Default: 32.
   */
  maxConnections?: number
}

/** Default of {@link ServiceOptions.maxConnections}. */
export const DEFAULT_MAX_CONNECTIONS = 32

/** A service as the call side uses it: validated, frozen. */
export interface ResolvedService {
  /** Its name in `services`. */
  readonly name: string
  /** Base URL (`href`). */
  readonly url: string
  /** `url`'s origin: the only origin its tokens are sent to. */
  readonly origin: string
  readonly resource: string
  /** Sorted, unique. */
  readonly scopes: readonly string[]
  /** `audience` values, unique, in the order given (none: empty). */
  readonly audience: readonly string[]
  /** The server identity pattern, when `spiffeId` is set. */
  readonly spiffeId: CallerPattern | undefined
  /** Connections to its origin at most. */
  readonly maxConnections: number
}

const SERVICE_KEYS = ['url', 'resource', 'scopes', 'audience', 'spiffeId', 'maxConnections'] as const satisfies readonly (keyof ServiceOptions)[]
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]'])
/** RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

const fail = (option: string, message: string): never => {
  throw new TypeError(`Callsign: "${option}" ${message}`)
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * Validate the `services` option. Throws `TypeError` naming `services.<name>.<field>` and the fix.
 * Absent (`undefined`): no services. Two services at one origin must name the same `spiffeId`
 * (a connection's server identity is checked once, for every request it carries).
 *
 * @example
 * resolveServices({ orders: { url: 'https://orders.internal', scopes: ['orders:read'] } }).get('orders')?.resource // 'https://orders.internal'
 */
export function resolveServices(value: unknown): ReadonlyMap<string, ResolvedService> {
  const services = new Map<string, ResolvedService>()
  if (value === undefined) return services
  if (!isPlainObject(value)) return fail('services', 'must be an object { <name>: { url, resource?, scopes?, spiffeId? } }')
  for (const [name, entry] of Object.entries(value)) {
    const service = resolveService(name, entry)
    const sibling = [...services.values()].find((other) => other.origin === service.origin)
    if (sibling && sibling.spiffeId?.source !== service.spiffeId?.source) {
      fail(`services.${name}.spiffeId`, `must be the same as services.${sibling.name}.spiffeId: both are served at ${service.origin}`)
    }
    services.set(name, service)
  }
  return services
}

function resolveService(name: string, value: unknown): ResolvedService {
  const option = `services.${name}`
  if (name.length === 0) fail('services', 'has a service with an empty name')
  if (!isPlainObject(value)) return fail(option, 'must be an object { url, resource?, scopes?, spiffeId? }')
  for (const key of Object.keys(value)) {
    if (!(SERVICE_KEYS as readonly string[]).includes(key)) fail(`${option}.${key}`, `is not a known option (known: ${SERVICE_KEYS.join(', ')})`)
  }
  const url = resolveUrl(value.url, `${option}.url`)
  const spiffeId = resolveSpiffeId(value.spiffeId, `${option}.spiffeId`)
  if (spiffeId && url.protocol !== 'https:') fail(`${option}.spiffeId`, 'needs an https url: a server identity is read from its TLS certificate')
  return Object.freeze({
    name,
    url: url.href,
    origin: url.origin,
    // As written: a service's audience is compared byte for byte, and `new URL` would add a `/`.
    resource: value.resource === undefined ? String(value.url) : resolveResource(value.resource, `${option}.resource`),
    scopes: resolveScopes(value.scopes, `${option}.scopes`),
    audience: resolveAudience(value.audience, `${option}.audience`),
    spiffeId,
    maxConnections: resolveMaxConnections(value.maxConnections, `${option}.maxConnections`),
  })
}

function resolveMaxConnections(value: unknown, option: string): number {
  if (value === undefined) return DEFAULT_MAX_CONNECTIONS
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 10_000) return fail(option, 'must be an integer from 1 to 10000')
  return value
}

function resolveUrl(value: unknown, option: string): URL {
  if (typeof value !== 'string' && !(value instanceof URL)) return fail(option, 'must be an https URL (a string or a URL)')
  const text = String(value)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return fail(option, `must be an absolute https URL (got ${JSON.stringify(text.slice(0, 200))})`)
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) {
    fail(option, 'must be an https URL (http only on a loopback host: 127.0.0.1, localhost, ::1)')
  }
  if (url.username !== '' || url.password !== '') fail(option, 'must not carry credentials (user:password@)')
  if (url.search !== '' || url.hash !== '' || text.includes('?') || text.includes('#')) fail(option, 'must not have a query or a fragment')
  return url
}

function resolveResource(value: unknown, option: string): string {
  if (typeof value !== 'string') return fail(option, 'must be an absolute URI string (RFC 8707)')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return fail(option, `must be an absolute URI (RFC 8707) (got ${JSON.stringify(value.slice(0, 200))})`)
  }
  if (url.hash !== '' || value.includes('#')) fail(option, 'must not have a fragment (RFC 8707 §2)')
  return value
}

function resolveScopes(value: unknown, option: string): readonly string[] {
  if (value === undefined) return Object.freeze([])
  if (!Array.isArray(value)) return fail(option, 'must be an array of scope strings')
  for (const scope of value) {
    if (typeof scope !== 'string' || !SCOPE_TOKEN.test(scope)) {
      fail(option, `must hold non-empty scope strings without spaces or quotes (got ${JSON.stringify(scope)})`)
    }
  }
  return Object.freeze([...new Set(value as string[])].sort())
}

function resolveAudience(value: unknown, option: string): readonly string[] {
  if (value === undefined) return Object.freeze([])
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? (value as unknown[]) : undefined
  if (!list || list.length === 0 || !list.every((audience) => typeof audience === 'string' && audience.length > 0 && audience.length <= 2048)) {
    return fail(option, 'must be a non-empty string or an array of them (RFC 8693 audience)')
  }
  return Object.freeze([...new Set(list as string[])])
}

function resolveSpiffeId(value: unknown, option: string): CallerPattern | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !value.startsWith('spiffe://')) {
    return fail(option, 'must be a SPIFFE ID (spiffe://<trust-domain>/<path>) or a prefix ending in "/*"')
  }
  return compileCallerPattern(value, option)
}
