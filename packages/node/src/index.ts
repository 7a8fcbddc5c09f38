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
  authorizeRequest,
  compileRule,
  createCallsign,
  responseHeaders,
  toHttpResponse,
  type AuthContext,
  type AuthFor,
  type AuthRule,
  type Callsign,
  type CallsignOptions,
  type CompiledRule,
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

type OnBehalfOf = CompiledRule['onBehalfOf']

/** Which `onBehalfOf` promises the rules that authorized a request made, as bits: every rule promises a context. */
const PROMISES: Readonly<Record<OnBehalfOf, number>> = { optional: 1, required: 3, forbidden: 5 }
const AUTHORIZED = Symbol('callsign.authorizedBy')
interface Authorized {
  [AUTHORIZED]?: number
}

/** Refuse what a typed handler cannot run without, even in dry run. */
const ENFORCED: Readonly<Record<OnBehalfOf, CompiledRule>> = {
  optional: compileRule({ enforce: true }),
  required: compileRule({ onBehalfOf: 'required', enforce: true }),
  forbidden: compileRule({ onBehalfOf: 'forbidden', enforce: true }),
}

function authorizeRoute(req: IncomingMessage, rule: CompiledRule): void {
  authorizeRequest(req, rule)
  const authorized = req as Authorized
  authorized[AUTHORIZED] = (authorized[AUTHORIZED] ?? 0) | PROMISES[rule.onBehalfOf]
}

/**
 * `req.auth` if a `requireAuth` promising `onBehalfOf` authorized the request and the context
 * keeps that promise. A missing `requireAuth` is a setup bug (plain `Error`); a broken promise
 * happens only in dry run, and throws the refusal an enforcing rule gives (an `AuthError`).
 */
function promised(req: IncomingMessage, onBehalfOf: OnBehalfOf): AuthContext {
  const wanted = PROMISES[onBehalfOf]
  if (wanted === undefined)
    throw new TypeError(`Callsign: getAuth(req, rule): "rule.onBehalfOf" must be 'required', 'forbidden' or 'optional' (got ${JSON.stringify(onBehalfOf)})`)
  if ((((req as Authorized)[AUTHORIZED] ?? 0) & wanted) !== wanted) {
    const rule = onBehalfOf === 'optional' ? 'requireAuth(rule)' : `requireAuth({ onBehalfOf: '${onBehalfOf}' })`
    throw new Error(`Callsign: getAuth() ran on a request no ${rule} authorized; call it first`)
  }
  const auth = req.auth
  if (auth && (onBehalfOf === 'optional' || (onBehalfOf === 'required') === (auth.user !== undefined))) return auth
  authorizeRequest(req, ENFORCED[onBehalfOf])
  throw new Error('Callsign: getAuth() found no auth context the rule promised')
}

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
  return promised(req, rule?.onBehalfOf ?? 'optional') as AuthFor<R>
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
      promised(req, rule.onBehalfOf)
    } catch (error) {
      return refuse(res, error)
    }
    return handler(req as AuthorizedRequest, res)
  }
}
