/**
 * Callsign for Koa 3.
 *
 * @example
 * import { callsign, requireAuth } from '@callsign/koa'
 * app.use(callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' } }))
 * router.get('/orders', requireAuth({ scopes: ['orders:read'] }, (ctx) => { ctx.body = ctx.state.auth.caller }))
 */
import type { Context, DefaultContext, DefaultState, Middleware, Next, ParameterizedContext } from 'koa'
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
  type AuthRequest,
  type AuthRule,
  type Callsign,
  type CallsignOptions,
  type CompiledRule,
  type PromisedAuthUsage,
} from '@callsign/core'

export type { AuthContext, AuthRule, CallsignOptions } from '@callsign/core'
export type { AuthFor, UserAuthContext, ServiceAuthContext } from '@callsign/core'
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
    return afterCheck<Promise<unknown> | void>(
      guard,
      req,
      (auth) => accept(ctx, next, auth),
      (error) => refuse(ctx, error),
    )
  }
  return Object.assign(middleware, { guard })
}

/** `ctx.state` behind `requireAuth(rule, handler)`: `ctx.state.auth` is what `rule` promises ({@link AuthFor}). */
export type AuthorizedState<R extends AuthRule = AuthRule, StateT = DefaultState> = StateT & { auth: AuthFor<R> }

/** `ctx` behind `requireAuth(rule, handler)`: Koa's, with `ctx.state.auth` set and typed by the rule. */
export type AuthorizedContext<R extends AuthRule = AuthRule, StateT = DefaultState, ContextT = DefaultContext, BodyT = unknown> = ParameterizedContext<
  AuthorizedState<R, StateT>,
  ContextT,
  BodyT
>

/** A middleware behind `requireAuth(rule, handler)`: Koa's, with `ctx.state.auth` set and typed by the rule. */
export type AuthorizedMiddleware<R extends AuthRule = AuthRule, StateT = DefaultState, ContextT = DefaultContext, BodyT = unknown> = (
  ctx: AuthorizedContext<R, StateT, ContextT, BodyT>,
  next: Next,
) => unknown

// How getAuth is named in setup errors.
const USAGE: PromisedAuthUsage = { call: 'getAuth(ctx, rule)', hint: 'put it before the handler' }

/**
 * The auth context the `requireAuth` before this middleware authorized, typed by `rule` (only its
 * `onBehalfOf` counts, and only when it is a literal): pass the same rule to get `auth.user` typed
 * as present. Throws an `Error` when no `requireAuth` with that `onBehalfOf` authorized the request
 * (a setup bug), never returns `undefined`. In dry run, a context without what the rule promises
 * throws the refusal as an `AuthError` (Koa answers its `status` and `headers`).
 *
 * @example
 * router.use(requireAuth({ onBehalfOf: 'required' }))
 * router.post('/orders', (ctx) => { ctx.body = { placedBy: getAuth(ctx, { onBehalfOf: 'required' }).user.sub } })
 */
export function getAuth<const R extends AuthRule = Record<never, never>>(ctx: Context, rule?: R): AuthFor<R> {
  return promisedAuth(requestOf(ctx), rule?.onBehalfOf ?? 'optional', USAGE) as AuthFor<R>
}

/** Authorize a route on both identities; answers 401/403 when the rule does not hold. */
export function requireAuth(rule?: AuthRule): Middleware<CallsignState>
/**
 * Authorize a route, then run `handler` with `ctx.state.auth` typed by the rule: always set, and
 * with `onBehalfOf: 'required'` `ctx.state.auth.user` is too (with `'forbidden'`, it is absent).
 * Answers 401/403 when the rule does not hold; in dry run, also when the context lacks what the
 * type promises.
 *
 * @example
 * router.post('/orders', requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (ctx) => {
 *   ctx.status = 201
 *   ctx.body = { placedBy: ctx.state.auth.user.sub }
 * }))
 */
export function requireAuth<const R extends AuthRule, StateT = DefaultState, ContextT = DefaultContext, BodyT = unknown>(
  rule: R,
  handler: AuthorizedMiddleware<R, StateT, ContextT, BodyT>,
): Middleware<StateT, ContextT, BodyT>
export function requireAuth(rule: AuthRule = {}, handler?: AuthorizedMiddleware): Middleware<CallsignState> {
  const compiled = compileRule(rule)
  if (handler !== undefined) return authorizedMiddleware(compiled, handler)
  return (ctx, next) => {
    try {
      authorizeRoute(requestOf(ctx), compiled)
    } catch (error) {
      if (error instanceof AuthError) return send(ctx, error)
      throw error
    }
    return next()
  }
}

function authorizedMiddleware(rule: CompiledRule, handler: AuthorizedMiddleware): Middleware<CallsignState> {
  if (typeof handler !== 'function') throw new TypeError('Callsign: requireAuth(rule, handler): "handler" must be a function')
  return (ctx, next) => {
    try {
      authorizeRoute(requestOf(ctx), rule)
      promisedAuth(requestOf(ctx), rule.onBehalfOf, USAGE)
    } catch (error) {
      if (error instanceof AuthError) return send(ctx, error)
      throw error
    }
    return handler(ctx as AuthorizedContext, next)
  }
}
