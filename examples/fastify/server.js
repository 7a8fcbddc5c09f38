// An orders service on Fastify 5, protected by Callsign over mTLS.
//   node examples/fastify/server.js --dev     (throwaway CA + local issuer, prints curl commands)
//   ISSUER=... AUDIENCE=... TLS_CERT=... TLS_KEY=... TLS_CA=... node examples/fastify/server.js
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import callsign, { requireAuth } from '@callsign/fastify'
import { closeOnSignals, loadConfig, mtlsServerOptions } from '../config.js'

/** The Fastify instance: `build({ issuer, audience, jwksUri?, tls: { cert, key, ca } })`; then `app.listen(...)`. */
export async function build({ issuer, audience, jwksUri, tls, logger = false }) {
  const app = Fastify({ https: mtlsServerOptions(tls), logger })
  await app.register(callsign, {
    issuers: { issuer, audience, ...(jwksUri ? { jwksUri } : {}) },
    mtls: { mode: 'required', trustDomains: ['example.org'] },
    // What each service may ever do, whatever its token says. Unlisted services are refused.
    callers: {
      'spiffe://example.org/ns/web/sa/frontend': ['orders:read', 'orders:write'],
      'spiffe://example.org/ns/batch/*': ['orders:read'],
    },
  })

  app.get('/orders', { preHandler: requireAuth({ scopes: ['orders:read'] }) }, async (request) => ({
    orders: [{ id: 1, item: 'coffee' }],
    caller: request.auth.caller.id,
    user: request.auth.user?.sub ?? null,
  }))

  // Writes only on behalf of a user who granted orders:write, by a service allowed to write.
  app.post('/orders', { preHandler: requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }) }, async (request, reply) => {
    reply.code(201)
    return { id: 2, placedBy: request.auth.user.sub, via: request.auth.caller.id }
  })

  // Batch jobs only, acting for themselves.
  app.get(
    '/reports/daily',
    { preHandler: requireAuth({ scopes: ['orders:read'], callers: ['spiffe://example.org/ns/batch/*'], onBehalfOf: 'forbidden' }) },
    async (request) => ({ orders: 1, caller: request.auth.caller.id }),
  )
  return app
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const config = await loadConfig({ name: 'fastify example' })
  const app = await build(config)
  await app.listen({ port: config.port, host: config.host })
  const { port } = app.server.address()
  if (config.dev) config.dev.printInstructions(port)
  else console.log(`fastify example listening on https://${config.host}:${port}`)
  closeOnSignals(async () => {
    await app.close()
    await config.dev?.close()
  })
}
