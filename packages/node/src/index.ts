/**
 * Callsign for plain `node:http` / `node:https` request listeners.
 *
 * @example
 * import https from 'node:https'
 * import { callsign, requireAuth } from '@callsign/node'
 * const authenticate = callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' } })
 * const canRead = requireAuth({ scopes: ['orders:read'] })
 * https.createServer(tlsOptions, async (req, res) => {
 *   if (!(await authenticate(req, res)) || !canRead(req, res)) return // the refusal is already written
 *   res.end(JSON.stringify({ caller: req.auth?.caller.id }))
 * })
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  AuthError,
  authorizeRequest,
  compileRule,
  createCallsign,
  responseHeaders,
  toHttpResponse,
  type AuthContext,
  type AuthRule,
  type Callsign,
  type CallsignOptions,
} from '@callsign/core'

export type { AuthContext, AuthRule, CallsignOptions } from '@callsign/core'
export { AuthError, createServerTlsOptions, logDecisions } from '@callsign/core'

declare module 'node:http' {
  interface IncomingMessage {
    /** Set by `callsign()`: who is calling, for whom. */
    auth?: AuthContext
  }
}

/** Authenticates a request; resolves `true` to go on, `false` when it wrote the refusal (or the metadata document). */
export interface NodeCallsign {
  (req: IncomingMessage, res: ServerResponse): Promise<boolean>
  readonly guard: Callsign
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: string): false {
  if (!res.headersSent) res.writeHead(status, headers)
  res.end(body)
  return false
}

/**
 * Create the guard (options validated now) and return the per-request authenticate function:
 * sets `req.auth`, or answers 400/401/503 with a challenge and an `application/problem+json`
 * body and resolves `false`. Also serves the RFC 9728 metadata document when configured.
 */
export function callsign(options: CallsignOptions): NodeCallsign {
  const guard = createCallsign(options)
  const authenticate = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const metadata = guard.metadataResponse(req)
    if (metadata) return send(res, metadata.status, metadata.headers, metadata.body)
    try {
      const auth = await guard.authenticate(req)
      if (auth) req.auth = auth
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      const { status, headers, body } = toHttpResponse(error)
      return send(res, status, headers, body)
    }
    const headers = responseHeaders(req)
    if (headers) for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
    return true
  }
  return Object.assign(authenticate, { guard })
}

/** Authorize on both identities: `true` to go on, `false` when the 401/403 was written. */
export function requireAuth(rule: AuthRule = {}): (req: IncomingMessage, res: ServerResponse) => boolean {
  const compiled = compileRule(rule)
  return (req, res) => {
    try {
      authorizeRequest(req, compiled)
      return true
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      const { status, headers, body } = toHttpResponse(error)
      return send(res, status, headers, body)
    }
  }
}
