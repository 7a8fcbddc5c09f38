// Compile-only tests of the public types (checked by `pnpm typecheck`, never executed).
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import Router from '@koa/router'
import { callsign as expressCallsign, requireAuth as expressRequire } from '@callsign/express'
import fastifyCallsign, { requireAuth as fastifyRequire } from '@callsign/fastify'
import { callsign as koaCallsign, requireAuth as koaRequire } from '@callsign/koa'
import { createServerTlsOptions, type AuthContext, type CallsignOptions, type TrustBundleSource, type TrustDomainBundles } from '@callsign/core'

declare module '@callsign/core' {
  interface AccessTokenClaims {
    tenant?: string
  }
}

const options: CallsignOptions = {
  issuers: [{ issuer: 'https://auth.example.com/', audience: 'orders', typ: 'jwt', scopeClaim: 'scp' }],
  mtls: { mode: 'required', trustDomains: ['example.org'] },
  callers: { 'spiffe://example.org/ns/web/*': ['orders:read'] },
}
// @ts-expect-error HS256 is not an accepted algorithm
const badAlg: CallsignOptions = { issuers: { issuer: 'https://a', audience: 'b' }, algorithms: ['HS256'] }
// @ts-expect-error mtls modes are 'required' | 'optional'
const badMtls: CallsignOptions = { issuers: { issuer: 'https://a', audience: 'b' }, mtls: 'sometimes' }
void badAlg
void badMtls

// Federation: one trustDomains map for the TLS stack and for the guard (typed or not).
const trustDomains = { 'example.org': { path: 'bundles/example.org.pem' }, 'partner.org': Buffer.from('') }
const typedDomains: TrustDomainBundles = trustDomains
const federated: CallsignOptions = { issuers: { issuer: 'https://a', audience: 'b' }, mtls: { mode: 'required', trustDomains } }
const federatedTyped: CallsignOptions = { issuers: { issuer: 'https://a', audience: 'b' }, mtls: { trustDomains: typedDomains } }
const polled: Record<string, TrustBundleSource> = {
  'partner.org': { path: 'bundles/partner.org.pem', pollSeconds: 30 },
  'example.org': ['-----BEGIN CERTIFICATE-----'],
}
const polledGuard: CallsignOptions = { issuers: { issuer: 'https://a', audience: 'b' }, mtls: { trustDomains: polled } }
void createServerTlsOptions({ cert: '', key: '', trustDomains })
void createServerTlsOptions({ cert: '', key: '', trustDomains: typedDomains })
void polledGuard
void federated
void federatedTyped

// Express: req.auth is typed by declaration merging.
const app = express()
app.use(expressCallsign(options))
app.get('/orders', expressRequire({ scopes: ['orders:read'], onBehalfOf: 'required' }), (req, res) => {
  const auth: AuthContext | undefined = req.auth
  const source: 'mtls' | 'forwarded' | 'token' | undefined = req.auth?.caller.source
  // A certificate-only call (certificateGrants) has no claims: narrow on `credential` first.
  const tenant: string | undefined = req.auth?.credential === 'token' ? req.auth.claims.tenant : undefined
  const issuer: string | undefined = req.auth?.issuer
  // @ts-expect-error claims are absent on certificate-only calls
  void req.auth?.claims.tenant
  void issuer
  res.json({ auth, source, tenant, user: req.auth?.user?.sub, spiffe: req.auth?.peer?.spiffeId })
})
// @ts-expect-error onBehalfOf has three modes
expressRequire({ onBehalfOf: 'sometimes' })

// Fastify: request.auth is decorated.
const fastify = Fastify()
await fastify.register(fastifyCallsign, options)
fastify.get('/orders', { preHandler: fastifyRequire({ anyScopes: ['a', 'b'] }) }, async (request) => {
  const auth: AuthContext | null = request.auth
  const binding: 'bearer' | 'dpop' | 'mtls' | undefined = auth?.binding
  await fastify.callsign.ready()
  return { binding, actors: auth?.actors satisfies string[] | undefined }
})

// Koa: ctx.state.auth.
const koa = new Koa()
const router = new Router()
koa.use(koaCallsign(options))
router.get('/orders', koaRequire({ callers: ['spiffe://example.org/ns/batch/*'] }), (ctx) => {
  const auth: AuthContext | undefined = ctx.state.auth
  ctx.body = { caller: auth?.caller.id }
})
koa.use(router.routes())
