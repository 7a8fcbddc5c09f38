/**
 * Callsign for Express 5.
 *
 * @example
 * import { callsign, requireAuth } from '@callsign/express'
 * app.use(callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' }, mtls: 'required' }))
 * app.get('/orders', requireAuth({ scopes: ['orders:read'] }, (req, res) => res.json({ caller: req.auth.caller.id })))
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import {
  afterCheck,
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

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `callsign()`: who is calling, for whom. Absent only when `credentials: 'optional'` and none were sent. */
      auth?: AuthContext
    }
  }
}

/** The middleware, with the guard it wraps (for `ready()` in readiness probes). */
export interface CallsignMiddleware extends RequestHandler {
  readonly guard: Callsign
}

function send(res: Response, error: AuthError): void {
  const { status, headers, body } = toHttpResponse(error)
  res.status(status).set(headers).send(body)
}

function fail(res: Response, next: NextFunction, error: unknown): void {
  if (error instanceof AuthError) send(res, error)
  else next(error)
}

function accept(req: Request, res: Response, next: NextFunction, auth: AuthContext | undefined): void {
  if (auth) req.auth = auth
  const headers = responseHeaders(req)
  if (headers) res.set(headers)
  next()
}

/**
 * Authenticate every request: sets `req.auth`, or answers 400/401/503 with a `WWW-Authenticate`
 * challenge and an `application/problem+json` body. Options are validated here, at startup.
 */
export function callsign(options: CallsignOptions): CallsignMiddleware {
  const guard = createCallsign(options)
  const middleware = (req: Request, res: Response, next: NextFunction): void => {
    const metadata = guard.metadataResponse(req)
    if (metadata) {
      res.status(metadata.status).set(metadata.headers).send(metadata.body)
      return
    }
    // A cached token is decided without a promise; otherwise continue when it settles.
    void afterCheck(
      guard,
      req,
      (auth) => accept(req, res, next, auth),
      (error) => fail(res, next, error),
    )
  }
  return Object.assign(middleware, { guard })
}

/** `req` in a handler behind `requireAuth(rule, handler)`: `req.auth` is what `rule` promises ({@link AuthFor}). */
export type AuthorizedRequest<
  R extends AuthRule = AuthRule,
  P = Request['params'],
  ResBody = unknown,
  ReqBody = unknown,
  ReqQuery = Request['query'],
  Locals extends Record<string, unknown> = Record<string, unknown>,
> = Request<P, ResBody, ReqBody, ReqQuery, Locals> & { auth: AuthFor<R> }

/** A route handler behind `requireAuth(rule, handler)`: Express's, with `req.auth` set and typed by the rule. */
export type AuthorizedHandler<
  R extends AuthRule = AuthRule,
  P = Request['params'],
  ResBody = unknown,
  ReqBody = unknown,
  ReqQuery = Request['query'],
  Locals extends Record<string, unknown> = Record<string, unknown>,
> = (req: AuthorizedRequest<R, P, ResBody, ReqBody, ReqQuery, Locals>, res: Response<ResBody, Locals>, next: NextFunction) => unknown

// How getAuth is named in setup errors.
const USAGE: PromisedAuthUsage = { call: 'getAuth(req, rule)', hint: 'put it before the handler' }

/**
 * The auth context the `requireAuth` before this handler authorized, typed by `rule` (only its
 * `onBehalfOf` counts, and only when it is a literal): pass the same rule to get `auth.user`
 * typed as present. Throws an `Error` when no `requireAuth` with that `onBehalfOf` authorized the
 * request (a setup bug), never returns `undefined`. In dry run, a context without what the rule
 * promises throws the refusal as an `AuthError` (Express answers its `status` and `headers`).
 *
 * @example
 * router.use(requireAuth({ onBehalfOf: 'required' }))
 * router.post('/orders', (req, res) => res.json({ placedBy: getAuth(req, { onBehalfOf: 'required' }).user.sub }))
 */
export function getAuth<const R extends AuthRule = Record<never, never>>(req: Request, rule?: R): AuthFor<R> {
  return promisedAuth(req, rule?.onBehalfOf ?? 'optional', USAGE) as AuthFor<R>
}

/**
 * The middleware `requireAuth(rule)` returns: a `RequestHandler`, generic so that TypeScript still
 * infers the route's `req.params` in the handlers after it.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Express's own bound for locals
export type RequireAuthMiddleware = <P, ResBody, ReqBody, ReqQuery, Locals extends Record<string, any>>(
  req: Request<P, ResBody, ReqBody, ReqQuery, Locals>,
  res: Response<ResBody, Locals>,
  next: NextFunction,
) => void

/** Authorize a route on both identities; answers 401/403 when the rule does not hold. */
export function requireAuth(rule?: AuthRule): RequireAuthMiddleware
/**
 * Authorize a route, then run `handler` with `req.auth` typed by the rule: always set, and with
 * `onBehalfOf: 'required'` `req.auth.user` is too (with `'forbidden'`, it is absent). Answers
 * 401/403 when the rule does not hold; in dry run, also when the context lacks what the type promises.
 *
 * @example
 * app.post('/orders', requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (req, res) => {
 *   res.status(201).json({ placedBy: req.auth.user.sub })
 * }))
 */
export function requireAuth<
  const R extends AuthRule,
  P = Request['params'],
  ResBody = unknown,
  ReqBody = unknown,
  ReqQuery = Request['query'],
  Locals extends Record<string, unknown> = Record<string, unknown>,
>(rule: R, handler: AuthorizedHandler<R, P, ResBody, ReqBody, ReqQuery, Locals>): RequestHandler<P, ResBody, ReqBody, ReqQuery, Locals>
export function requireAuth(rule: AuthRule = {}, handler?: AuthorizedHandler): RequireAuthMiddleware | RequestHandler {
  const compiled = compileRule(rule)
  if (handler !== undefined) return authorizedHandler(compiled, handler)
  return (req: Request, res: Response, next: NextFunction): void => {
    try {
      authorizeRoute(req, compiled)
    } catch (error) {
      fail(res, next, error)
      return
    }
    next()
  }
}

function authorizedHandler(rule: CompiledRule, handler: AuthorizedHandler): RequestHandler {
  if (typeof handler !== 'function') throw new TypeError('Callsign: requireAuth(rule, handler): "handler" must be a function')
  return (req, res, next) => {
    try {
      authorizeRoute(req, rule)
      promisedAuth(req, rule.onBehalfOf, USAGE)
    } catch (error) {
      fail(res, next, error)
      return
    }
    // Returned, so Express 5 forwards a rejected promise to the error handler.
    return handler(req as AuthorizedRequest, res as Response<unknown, Record<string, unknown>>, next)
  }
}
