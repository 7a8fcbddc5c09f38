/**
 * Callsign for Koa 3.
 *
 * @example
 * import { callsign, requireAuth } from '@callsign/koa'
 * app.use(callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' } }))
 * router.get('/orders', requireAuth({ scopes: ['orders:read'] }), (ctx) => { ctx.body = ctx.state.auth.caller })
 */
import type { Context, Middleware } from 'koa'
import {
  AuthError,
  afterCheck,
  authorizeRequest,
  compileRule,
  createCallsign,
  responseHeaders,
  toHttpResponse,
  type AuthContext,
  type AuthRequest,
  type AuthRule,
  type Callsign,
  type CallsignOptions,
} from '@callsign/core'

export type { AuthContext, AuthRule, CallsignOptions } from '@callsign/core'
export { AuthError, createServerTlsOptions, logDecisions } from '@callsign/core'

/** The state Callsign adds: `ctx.state.auth`. */
export interface CallsignState {
  /** Who is calling, for whom. Absent only when `credentials: 'optional'` and none were sent. */
  auth?: AuthContext
}

declare module 'koa' {
  interface DefaultState {
    auth?: AuthContext
  }
}

/** The middleware, with the guard it wraps (for `ready()` in readiness probes). */
export interface CallsignMiddleware extends Middleware<CallsignState> {
  readonly guard: Callsign
}

function send(ctx: Context, error: AuthError): void {
  const { status, headers, body } = toHttpResponse(error)
  ctx.status = status
  ctx.set(headers)
  ctx.body = body
}

/**
 * The Node request, carrying the target the client sent. A mount (`koa-mount`) rewrites `ctx.req.url`
 * for the app inside it, and a DPoP `htu`, the metadata route and decision events must see the URL
 * the client called; Koa keeps it in `ctx.originalUrl`, and core reads `originalUrl` first (where
 * Express and Fastify's `rewriteUrl` keep it). One set by a framework Koa runs inside is kept.
 */
function requestOf(ctx: Context): AuthRequest {
  const req: AuthRequest = ctx.req
  // Written only under a mount: the common request keeps its shape.
  if (req.originalUrl === undefined && req.url !== ctx.originalUrl) req.originalUrl = ctx.originalUrl
  return req
}

/**
 * Authenticate every request: sets `ctx.state.auth`, or answers 400/401/503 with a
 * `WWW-Authenticate` challenge and an `application/problem+json` body.
 */
export function callsign(options: CallsignOptions): CallsignMiddleware {
  const guard = createCallsign(options)
  const accept = (ctx: Context, next: () => Promise<unknown>, auth: AuthContext | undefined): Promise<unknown> => {
    if (auth) ctx.state.auth = auth
    const headers = responseHeaders(ctx.req)
    if (headers) ctx.set(headers)
    return next()
  }
  const refuse = (ctx: Context, error: unknown): void => {
    if (error instanceof AuthError) return send(ctx, error)
    throw error
  }
  // Not async: a cached token is decided without a promise of Callsign's own.
  const middleware: Middleware<CallsignState> = (ctx, next) => {
    const req = requestOf(ctx)
    const metadata = guard.metadataResponse(req)
    if (metadata) {
      ctx.status = metadata.status
      ctx.set(metadata.headers)
      ctx.body = metadata.body
      return
    }
    return afterCheck<Promise<unknown> | void>(guard, req, (auth) => accept(ctx, next, auth), (error) => refuse(ctx, error))
  }
  return Object.assign(middleware, { guard })
}

/** Authorize a route on both identities; answers 401/403 when the rule does not hold. */
export function requireAuth(rule: AuthRule = {}): Middleware<CallsignState> {
  const compiled = compileRule(rule)
  return (ctx, next) => {
    try {
      // Under a mount the guard outside it did not see, a rule's own decision event needs the original path too.
      authorizeRequest(requestOf(ctx), compiled)
    } catch (error) {
      if (error instanceof AuthError) return send(ctx, error)
      throw error
    }
    return next()
  }
}
