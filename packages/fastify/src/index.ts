/**
 * Callsign for Fastify 5.
 *
 * @example
 * import callsign, { requireAuth } from '@callsign/fastify'
 * await app.register(callsign, { issuers: { issuer: 'https://auth.example.com', audience: 'orders' } })
 * app.get('/orders', requireAuth({ scopes: ['orders:read'] }, async (request) => request.auth.caller))
 */
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  preHandlerHookHandler,
  RawServerBase,
  RouteGenericInterface,
} from 'fastify'
import fp from 'fastify-plugin'
import {
  afterCheck,
  AuthError,
  authorizeRoute,
  checkServerMtls,
  compileRule,
  createCallsign,
  logDecisions,
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

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the callsign plugin: who is calling, for whom. `null` only when `credentials: 'optional'` and none were sent. */
    auth: AuthContext | null
  }
  interface FastifyInstance {
    /** The guard registered by the callsign plugin (for `ready()` in readiness probes). */
    callsign: Callsign
  }
}

function send(reply: FastifyReply, error: AuthError): FastifyReply {
  const { status, headers, body } = toHttpResponse(error)
  return reply.code(status).headers(headers).send(body)
}

/** The plugin's options: Callsign's, plus `logDecisions` to write decision events to Fastify's logger (pino). */
export interface FastifyCallsignOptions extends CallsignOptions {
  /** Log every decision event with `request`-independent `app.log` at this level (refusals at `warn`). Default off. */
  logDecisions?: false | 'trace' | 'debug' | 'info'
}

const plugin: FastifyPluginAsync<FastifyCallsignOptions> = async (fastify, options) => {
  // Fastify passes its own registration options along; keep only ours.
  const {
    prefix: _prefix,
    logLevel: _logLevel,
    logDecisions: level,
    ...callsignOptions
  } = options as FastifyCallsignOptions & { prefix?: unknown; logLevel?: unknown }
  if (level !== undefined && level !== false && !['trace', 'debug', 'info'].includes(level)) {
    throw new TypeError(`Callsign: "logDecisions" must be false, 'trace', 'debug' or 'info' (got ${JSON.stringify(level)})`)
  }
  if (level) {
    // Decision events go to Fastify's own logger (pino), next to the user's hook if any.
    const toLog = logDecisions(fastify.log, level)
    const userHook = callsignOptions.onDecision
    callsignOptions.onDecision = userHook ? (event) => (toLog(event), userHook(event)) : toLog
  }
  const guard = createCallsign(callsignOptions)
  fastify.decorate('callsign', guard)
  // Stop the guard's file polling with the app.
  fastify.addHook('onClose', () => guard.close())
  // Fastify knows its server by now: an mTLS-required app on a server that cannot see client certificates is told at startup.
  fastify.addHook('onReady', async () => checkServerMtls(guard.config, fastify.server))
  fastify.decorateRequest('auth', null)
  const accept = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction, auth: AuthContext | undefined): void => {
    request.auth = auth ?? null
    const headers = responseHeaders(request.raw)
    if (headers) reply.headers(headers)
    done()
  }
  // Callback style, not async: a cached token is decided without a promise. A refusal is sent
  // without calling `done` (Fastify's way to answer from a hook); anything else goes to `done(error)`.
  const refuse = (reply: FastifyReply, done: HookHandlerDoneFunction, error: unknown): void => {
    if (error instanceof AuthError) send(reply, error)
    else done(error as Error)
  }
  fastify.addHook('onRequest', (request, reply, done) => {
    const metadata = guard.metadataResponse(request.raw)
    if (metadata) {
      reply.code(metadata.status).headers(metadata.headers).send(metadata.body)
      return
    }
    void afterCheck(
      guard,
      request.raw,
      (auth) => accept(request, reply, done, auth),
      (error) => refuse(reply, done, error),
    )
  })
}

/** Authenticates every request in the registering scope (`onRequest`) and decorates `request.auth`. */
const callsign = fp(plugin, { fastify: '5.x', name: '@callsign/fastify' })
export default callsign
export { callsign }

/** `request` in a handler behind `requireAuth(rule, handler)`: `request.auth` is what `rule` promises ({@link AuthFor}). */
export type AuthorizedRequest<
  R extends AuthRule = AuthRule,
  RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
> = FastifyRequest<RouteGeneric> & {
  auth: AuthFor<R>
}

/** A route handler behind `requireAuth(rule, handler)`: Fastify's, with `request.auth` set and typed by the rule. */
export type AuthorizedHandler<R extends AuthRule = AuthRule, RouteGeneric extends RouteGenericInterface = RouteGenericInterface> = (
  this: FastifyInstance,
  request: AuthorizedRequest<R, RouteGeneric>,
  reply: FastifyReply<RouteGeneric>,
) => unknown

/**
 * The route handler `requireAuth(rule, handler)` returns: generic in the server, so it fits an
 * `http`, `https` or `http2` app alike.
 */
export type AuthorizingRouteHandler<RouteGeneric extends RouteGenericInterface = RouteGenericInterface> = <Server extends RawServerBase>(
  this: FastifyInstance<Server>,
  request: FastifyRequest<RouteGeneric, Server>,
  reply: FastifyReply<RouteGeneric, Server>,
) => unknown

// How getAuth is named in setup errors.
const USAGE: PromisedAuthUsage = { call: 'getAuth(request, rule)', hint: "put it in the route's preHandler" }

/**
 * The auth context the route's `requireAuth` authorized, typed by `rule` (only its `onBehalfOf`
 * counts, and only when it is a literal): pass the same rule to get `auth.user` typed as present.
 * Throws an `Error` when no `requireAuth` with that `onBehalfOf` authorized the request (a setup
 * bug), never returns `null`. In dry run, a context without what the rule promises throws the
 * refusal as an `AuthError` (Fastify answers its `statusCode` and `headers`).
 *
 * @example
 * app.post('/orders', { preHandler: requireAuth({ onBehalfOf: 'required' }) }, async (request) =>
 *   ({ placedBy: getAuth(request, { onBehalfOf: 'required' }).user.sub }))
 */
export function getAuth<const R extends AuthRule = Record<never, never>>(request: FastifyRequest, rule?: R): AuthFor<R> {
  return promisedAuth(request.raw, rule?.onBehalfOf ?? 'optional', USAGE) as AuthFor<R>
}

/** A `preHandler` that authorizes a route on both identities; answers 401/403 when the rule does not hold. */
export function requireAuth(rule?: AuthRule): preHandlerHookHandler
/**
 * A route handler that authorizes the route, then runs `handler` with `request.auth` typed by the
 * rule: never `null`, and with `onBehalfOf: 'required'` `request.auth.user` is set (with
 * `'forbidden'`, it is absent). Answers 401/403 when the rule does not hold; in dry run, also
 * when the context lacks what the type promises.
 *
 * @example
 * app.post('/orders', requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, async (request, reply) =>
 *   reply.code(201).send({ placedBy: request.auth.user.sub })))
 */
export function requireAuth<const R extends AuthRule, RouteGeneric extends RouteGenericInterface = RouteGenericInterface>(
  rule: R,
  handler: AuthorizedHandler<R, RouteGeneric>,
): AuthorizingRouteHandler<RouteGeneric>
export function requireAuth(rule: AuthRule = {}, handler?: AuthorizedHandler): preHandlerHookHandler | AuthorizingRouteHandler {
  const compiled = compileRule(rule)
  if (handler !== undefined) return authorizedHandler(compiled, handler)
  return function callsignRequireAuth(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    try {
      authorizeRoute(request.raw, compiled)
    } catch (error) {
      if (error instanceof AuthError) send(reply, error)
      else done(error as Error)
      return
    }
    done()
  }
}

function authorizedHandler(rule: CompiledRule, handler: AuthorizedHandler): AuthorizingRouteHandler {
  if (typeof handler !== 'function') throw new TypeError('Callsign: requireAuth(rule, handler): "handler" must be a function')
  return function callsignAuthorized(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): unknown {
    try {
      authorizeRoute(request.raw, rule)
      promisedAuth(request.raw, rule.onBehalfOf, USAGE)
    } catch (error) {
      // Anything else, thrown from a handler, reaches Fastify's error handler.
      if (!(error instanceof AuthError)) throw error
      // Nothing returned: Fastify would send a returned reply a second time.
      send(reply, error)
      return undefined
    }
    return handler.call(this, request as AuthorizedRequest, reply)
  } as AuthorizingRouteHandler
}
