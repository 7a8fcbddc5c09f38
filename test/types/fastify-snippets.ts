// Compile-only copies of every Fastify snippet in README.md, docs/fastify.md and packages/fastify/README.md
// that touches the auth context (checked by `pnpm typecheck` under strict, never executed). Kept
// as written, with types only where JavaScript has none (function parameters, free variables).
// If a snippet changes, change its copy here.
import { readFileSync } from 'node:fs'
import type { ServerOptions } from 'node:https'
import Fastify from 'fastify'
import callsign, { getAuth, requireAuth } from '@callsign/fastify'
import type { CallsignOptions } from '@callsign/core'

declare const cert: string, key: string, ca: string
declare const options: CallsignOptions

// docs/fastify.md, step 3 (app.mjs)
export async function buildApp({ issuer, audience, https }: { issuer: string; audience: string; https: ServerOptions }) {
  const app = Fastify({ https })
  await app.register(callsign, {
    issuers: { issuer, audience },
    mtls: { mode: 'required', trustDomains: ['example.org'] },
    // What each service may ever do, whatever its token says. Unlisted services are refused.
    callers: {
      'spiffe://example.org/ns/web/sa/frontend': ['orders:read', 'orders:write'],
      'spiffe://example.org/ns/batch/*': ['orders:read'],
    },
  })
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, async (request) => ({
      caller: request.auth.caller.id,
      user: request.auth.user?.sub ?? null,
      binding: request.auth.binding,
    })),
  )
  app.post(
    '/orders',
    requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, async (request, reply) =>
      reply.code(201).send({ placedBy: request.auth.user.sub, via: request.auth.caller.id }),
    ),
  )
  return app
}

// docs/fastify.md, step 7 (unauthenticated routes)
{
  const app = Fastify()
  app.get('/healthz', async () => 'ok') // not authenticated
  await app.register(async (api) => {
    await api.register(callsign, options)
    api.get(
      '/orders',
      requireAuth({ scopes: ['orders:read'] }, async (request) => request.auth.caller),
    )
  })
}

// README.md, Usage > Fastify 5
{
  const app = Fastify({
    https: {
      cert: readFileSync('server.pem'),
      key: readFileSync('server-key.pem'),
      ca: readFileSync('bundle.pem'),
      requestCert: true,
      rejectUnauthorized: false,
    },
  })
  await app.register(callsign, {
    issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
    mtls: { mode: 'required', trustDomains: ['example.org'] },
    callers: { 'spiffe://example.org/ns/web/sa/frontend': ['orders:read', 'orders:write'] },
  })
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, async (request) => ({
      caller: request.auth.caller.id,
      user: request.auth.user?.sub,
    })),
  )
  await app.listen({ port: 8443, host: '0.0.0.0' })
}

// packages/fastify/README.md, Example and TypeScript
{
  const app = Fastify({ https: { cert, key, ca, requestCert: true, rejectUnauthorized: false } })
  await app.register(callsign, {
    issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
    mtls: { mode: 'required', trustDomains: ['example.org'] },
    callers: { 'spiffe://example.org/ns/web/sa/frontend': ['orders:read'] },
  })
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, async (request) => ({ caller: request.auth.caller.id })),
  )
  const rule = { scopes: ['orders:read'] }
  app.get<{ Params: { id: string } }>(
    '/orders/:id',
    requireAuth(rule, async (request) => request.params.id),
  )
}

// packages/fastify/src/index.ts, module example and getAuth's example
{
  const app = Fastify()
  await app.register(callsign, { issuers: { issuer: 'https://auth.example.com', audience: 'orders' } })
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, async (request) => request.auth.caller),
  )
  app.post('/orders', { preHandler: requireAuth({ onBehalfOf: 'required' }) }, async (request) => ({
    placedBy: getAuth(request, { onBehalfOf: 'required' }).user.sub,
  }))
  app.post(
    '/orders',
    requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, async (request, reply) => reply.code(201).send({ placedBy: request.auth.user.sub })),
  )
}
