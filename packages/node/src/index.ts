/**
 * Callsign for plain `node:http` / `node:https` request listeners.
 *
 * @example
 * import https from 'node:https'
 * import { callsign, requireAuth } from '@callsign/node'
 * const authenticate = callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' } })
 * const listOrders = requireAuth({ scopes: ['orders:read'] }, (req, res) => res.end(JSON.stringify({ caller: req.auth.caller.id })))
 * https.createServer(tlsOptions, async (req, res) => {
 *   if (await authenticate(req, res)) listOrders(req, res) // otherwise the refusal is already written
 * })
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  AuthError,
  authorizeRoute,
  compileRule,
  createCallsign,
  promisedAuth,
  responseHeaders,
  toHttpResponse,
  type AuthContext,
  type AuthFor,
  type AuthRule,
  type Callsign,
  type CallsignOptions,
  type CompiledRule,
  type PromisedAuthUsage,
} from '@callsign/core'

export type { AuthContext, AuthRule, CallsignOptions } from '@callsign/core'
export type { AuthFor, UserAuthContext, ServiceAuthContext } from '@callsign/core'
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

/** `req` in a handler behind `requireAuth(rule, handler)`: `req.auth` is what `rule` promises ({@link AuthFor}). */
export type AuthorizedRequest<R extends AuthRule = AuthRule> = IncomingMessage & { auth: AuthFor<R> }

/** A handler behind `requireAuth(rule, handler)`, with `req.auth` set and typed by the rule. */
export type AuthorizedHandler<R extends AuthRule = AuthRule, T = unknown> = (req: AuthorizedRequest<R>, res: ServerResponse) => T

// How getAuth is named in setup errors.
const USAGE: PromisedAuthUsage = { call: 'getAuth(req, rule)', hint: 'call it first' }

/**
 * The auth context a `requireAuth` check authorized for `req`, typed by `rule` (only its
 * `onBehalfOf` counts, and only when it is a literal): pass the same rule to get `auth.user` typed
 * as present. Throws an `Error` when no `requireAuth` with that `onBehalfOf` authorized the request
 * (a setup bug), never returns `undefined`. In dry run, a context without what the rule promises
 * throws the refusal as an `AuthError` (write it with `toHttpResponse`).
 *
 * @example
 * if (!(await authenticate(req, res)) || !canWrite(req, res)) return
 * const placedBy = getAuth(req, { onBehalfOf: 'required' }).user.sub
 */
export function getAuth<const R extends AuthRule = Record<never, never>>(req: IncomingMessage, rule?: R): AuthFor<R> {
  return promisedAuth(req, rule?.onBehalfOf ?? 'optional', USAGE) as AuthFor<R>
}

/** Authorize on both identities: `true` to go on, `false` when the 401/403 was written. */
export function requireAuth(rule?: AuthRule): (req: IncomingMessage, res: ServerResponse) => boolean
/**
 * Authorize on both identities, then run `handler` with `req.auth` typed by the rule: always set,
 * and with `onBehalfOf: 'required'` `req.auth.user` is too (with `'forbidden'`, it is absent).
 * Returns what `handler` returns, or `false` when the 401/403 was written (in dry run, also when
 * the context lacks what the type promises).
 *
 * @example
 * const placeOrder = requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (req, res) => {
 *   res.writeHead(201).end(JSON.stringify({ placedBy: req.auth.user.sub }))
 * })
 * // in the listener, after authenticate(req, res) resolved true:
 * return placeOrder(req, res)
 */
export function requireAuth<const R extends AuthRule, T>(rule: R, handler: AuthorizedHandler<R, T>): (req: IncomingMessage, res: ServerResponse) => T | false
export function requireAuth(rule: AuthRule = {}, handler?: AuthorizedHandler): (req: IncomingMessage, res: ServerResponse) => unknown {
  const compiled = compileRule(rule)
  if (handler !== undefined) return authorizedHandler(compiled, handler)
  return (req, res) => {
    try {
      authorizeRoute(req, compiled)
      return true
    } catch (error) {
      return refuse(res, error)
    }
  }
}

function refuse(res: ServerResponse, error: unknown): false {
  if (!(error instanceof AuthError)) throw error
  const { status, headers, body } = toHttpResponse(error)
  return send(res, status, headers, body)
}

function authorizedHandler(rule: CompiledRule, handler: AuthorizedHandler): (req: IncomingMessage, res: ServerResponse) => unknown {
  if (typeof handler !== 'function') throw new TypeError('Callsign: requireAuth(rule, handler): "handler" must be a function')
  return (req, res) => {
    try {
      authorizeRoute(req, rule)
      promisedAuth(req, rule.onBehalfOf, USAGE)
    } catch (error) {
      return refuse(res, error)
    }
    return handler(req as AuthorizedRequest, res)
  }
}
