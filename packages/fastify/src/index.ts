/**
 * Callsign for Fastify 5.
 *
 * @example
 * import callsign, { requireAuth } from '@callsign/fastify'
 * await app.register(callsign, { issuers: { issuer: 'https://auth.example.com', audience: 'orders' } })
 * app.get('/orders', { preHandler: requireAuth({ scopes: ['orders:read'] }) }, async (request) => request.auth?.caller)
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction, preHandlerHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import {
  AuthError,
  afterCheck,
  authorizeRequest,
  compileRule,
  createCallsign,
  logDecisions,
  responseHeaders,
  toHttpResponse,
  type AuthContext,
  type AuthRule,
  type Callsign,
  type CallsignOptions,
} from '@callsign/core'

export type { AuthContext, AuthRule, CallsignOptions } from '@callsign/core'
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
  const { prefix: _prefix, logLevel: _logLevel, logDecisions: level, ...callsignOptions } = options as FastifyCallsignOptions & { prefix?: unknown; logLevel?: unknown }
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
    void afterCheck(guard, request.raw, (auth) => accept(request, reply, done, auth), (error) => refuse(reply, done, error))
  })
}

/** Authenticates every request in the registering scope (`onRequest`) and decorates `request.auth`. */
const callsign = fp(plugin, { fastify: '5.x', name: '@callsign/fastify' })
export default callsign
export { callsign }

/** A `preHandler` that authorizes a route on both identities; answers 401/403 when the rule does not hold. */
export function requireAuth(rule: AuthRule = {}): preHandlerHookHandler {
  const compiled = compileRule(rule)
  return function callsignRequireAuth(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    try {
      authorizeRequest(request.raw, compiled)
    } catch (error) {
      if (error instanceof AuthError) send(reply, error)
      else done(error as Error)
      return
    }
    done()
  }
}
