import type { IncomingHttpHeaders } from 'node:http'
import type { X509Certificate } from 'node:crypto'

/**
 * The TLS side of a connection, as much as Callsign needs: Node's `TLSSocket` satisfies it.
 * `authorized` must come from the TLS stack (verified against the server's pinned `ca`).
 */
export interface PeerSocket {
  encrypted?: boolean
  authorized?: boolean
  authorizationError?: Error | string | null
  getPeerX509Certificate?: () => X509Certificate | undefined
  disableRenegotiation?: () => void
}

/**
 * All an adapter hands to core. Node's `IncomingMessage` (Express `req`, Fastify `request.raw`,
 * Koa `ctx.req`, plain `http`) satisfies it as is.
 */
export interface AuthRequest {
  method?: string | undefined
  /** The request target as received (path and query). */
  url?: string | undefined
  /**
   * The target the client sent, when a mount, router or rewrite changed `url` for the code Callsign
   * runs in: Express and Fastify's `rewriteUrl` keep it here, the Koa adapter copies `ctx.originalUrl`
   * here. Read before `url` for the DPoP `htu`, the metadata route and decision events.
   */
  originalUrl?: string | undefined
  headers: IncomingHttpHeaders
  /** Node >= 18.3: every header as an array, so duplicates are visible. Preferred over `rawHeaders`. */
  headersDistinct?: Record<string, string[] | undefined>
  rawHeaders?: string[]
  /** The connection: a `TLSSocket` for HTTPS (read as a {@link PeerSocket}), anything else for plain HTTP. */
  socket?: object | null | undefined
  /** A parsed body, when a body parser ran before Callsign (used only to refuse `access_token` there). */
  body?: unknown
}

/** Every value a header was sent with, duplicates included, in order. */
export function headerValues(request: AuthRequest, name: string): string[] {
  // rawHeaders first: Node builds headersDistinct (every header) on first access, per request.
  const raw = request.rawHeaders
  if (raw) {
    const values: string[] = []
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const key = raw[i]!
      if (key.length === name.length && key.toLowerCase() === name) values.push(raw[i + 1]!)
    }
    return values
  }
  const distinct = request.headersDistinct?.[name]
  if (distinct) return distinct
  const value = request.headers[name]
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

/** The path of the request target the client sent (`originalUrl`, else `url`), without the query string. */
export function requestPath(request: AuthRequest): string {
  const target = request.originalUrl ?? request.url ?? ''
  const q = target.indexOf('?')
  return q === -1 ? target : target.slice(0, q)
}
