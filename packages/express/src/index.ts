/**
 * Callsign for Express 5.
 *
 * @example
 * import { callsign, requireAuth } from '@callsign/express'
 * app.use(callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' }, mtls: 'required' }))
 * app.get('/orders', requireAuth({ scopes: ['orders:read'] }), (req, res) => res.json({ caller: req.auth?.caller.id }))
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import {
  AuthError,
  afterCheck,
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
    void afterCheck(guard, req, (auth) => accept(req, res, next, auth), (error) => fail(res, next, error))
  }
  return Object.assign(middleware, { guard })
}

/** Authorize a route on both identities; answers 401/403 when the rule does not hold. */
export function requireAuth(rule: AuthRule = {}): RequestHandler {
  const compiled = compileRule(rule)
  return (req, res, next) => {
    try {
      authorizeRequest(req, compiled)
    } catch (error) {
      fail(res, next, error)
      return
    }
    next()
  }
}
