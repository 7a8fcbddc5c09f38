// The token side of @callsign/client against a REAL authorization server: panva's oidc-provider
// on 127.0.0.1 (test/support/oidc-provider.ts), plain http (loopback) for client_secret_basic,
// private_key_jwt and DPoP, https with an RFC 8705 mTLS endpoint alias for tls_client_auth and
// certificate-bound tokens, and RFC 8693 token exchange registered as a custom grant. Clocks are
// injected; nothing waits on time (background refreshes are awaited through their events).
import { createPrivateKey, generateKeyPairSync } from 'node:crypto'
import { calculateJwkThumbprint, decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuthorizationServerError,
  AuthorizationServerUnavailableError,
  ClientError,
  createDpopKey,
  createTokenSource,
  resolveTokenOptions,
  type ClientEvent,
  type DpopKey,
  type IdentityMaterial,
  type TokenRequest,
  type TokenSource,
} from '@callsign/client'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { AUDIENCE, ID } from '../../../test/support/fixtures.js'
import {
  es256,
  RESOURCE,
  secretFor,
  startOidcProvider,
  TOKEN_EXCHANGE_GRANT,
  type ClientMetadata,
  type RunningOidcProvider,
} from '../../../test/support/oidc-provider.js'

const BASIC = 'orders-caller-basic'
const JWT_CLIENT = 'orders-caller-jwt'
const WEB = 'web-frontend'
const GRANTS = ['client_credentials', TOKEN_EXCHANGE_GRANT]
const ORDERS: TokenRequest = { service: 'orders', resource: RESOURCE.orders, scopes: ['orders:read'] }

/** The workload identity as the token side reads it, with a rotation. */
function identityOf(cert: IssuedCertificate, ca: string) {
  let material: IdentityMaterial = { cert: cert.certPem, key: cert.keyPem, ca, thumbprint: cert.x5tS256, generation: 1 }
  return {
    current: async () => material,
    rotate(next: IssuedCertificate) {
      material = { cert: next.certPem, key: next.keyPem, ca, thumbprint: next.x5tS256, generation: material.generation + 1 }
    },
  }
}

/** A settable clock. */
function clock(start = Date.now()) {
  let time = start
  return { now: () => time, set: (ms: number) => (time = ms), advance: (ms: number) => (time += ms) }
}

/** Events, and a promise of the next one of a type. */
function recorder() {
  const events: ClientEvent[] = []
  const waiting: Array<{ type: string; resolve: (event: ClientEvent) => void }> = []
  return {
    events,
    emit: (event: ClientEvent) => {
      events.push(event)
      for (const waiter of waiting.splice(0)) {
        if (waiter.type === event.type) waiter.resolve(event)
        else waiting.push(waiter)
      }
    },
    next: (type: string) => new Promise<ClientEvent>((resolve) => waiting.push({ type, resolve })),
    count: (type: string) => events.filter((event) => event.type === type).length,
  }
}

describe('token side against oidc-provider', () => {
  let ca: TestCa
  let frontend: IssuedCertificate
  let rotated: IssuedCertificate
  let plain: RunningOidcProvider
  let mtls: RunningOidcProvider
  let jwtKey: Awaited<ReturnType<typeof es256>>
  const sources: TokenSource[] = []

  /** A token source for `options` (closed after the suite). */
  const source = (
    options: Record<string, unknown>,
    extra: { identity?: ReturnType<typeof identityOf>; dpop?: DpopKey; now?: () => number; emit?: (event: ClientEvent) => void } = {},
  ): TokenSource => {
    const tokens = createTokenSource({
      options: resolveTokenOptions(options),
      identity: extra.identity,
      dpop: extra.dpop,
      emit: extra.emit ?? (() => {}),
      ...(extra.now ? { now: extra.now } : {}),
    })
    sources.push(tokens)
    return tokens
  }
  const basic = (op: RunningOidcProvider = plain) => ({ issuer: op.issuer, clientId: BASIC, auth: 'client_secret_basic', clientSecret: secretFor(BASIC) })

  beforeAll(async () => {
    ca = await createTestCa()
    const [server, cert, other] = await Promise.all([
      ca.issueServerCertificate(),
      ca.issueCertificate({ spiffeId: ID.frontend }),
      ca.issueCertificate({ spiffeId: ID.frontend }),
    ])
    frontend = cert
    rotated = other
    jwtKey = await es256('caller-key-1')
    const clients: ClientMetadata[] = [
      { client_id: BASIC, client_secret: secretFor(BASIC), grant_types: GRANTS, scope: 'orders:read orders:write' },
      { client_id: WEB, client_secret: secretFor(WEB), grant_types: GRANTS, scope: 'orders:read orders:write' },
      {
        client_id: JWT_CLIENT,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [jwtKey.publicJwk] },
        grant_types: GRANTS,
        scope: 'orders:read',
      },
    ]
    ;[plain, mtls] = await Promise.all([
      startOidcProvider({ clients, tokenExchange: true }),
      startOidcProvider({
        tls: { key: server.keyPem, cert: server.certPem, ca: ca.certPem },
        mtlsAlias: true,
        tokenExchange: true,
        clients: [
          {
            client_id: ID.frontend,
            token_endpoint_auth_method: 'tls_client_auth',
            tls_client_auth_san_uri: ID.frontend,
            tls_client_certificate_bound_access_tokens: true,
            grant_types: GRANTS,
            scope: 'orders:read orders:write',
          },
        ],
      }),
    ])
  })
  afterAll(async () => {
    await Promise.all(sources.map((tokens) => tokens.close()))
    expect(plain?.serverErrors).toEqual([])
    expect(mtls?.serverErrors).toEqual([])
    await Promise.all([plain?.close(), mtls?.close()])
  })

  describe('client authentication', () => {
    it('client_secret_basic: a bearer token for the resource (RFC 8707) and the scopes asked for', async () => {
      const recorded = recorder()
      const token = await source(basic(), { emit: recorded.emit }).get(ORDERS)
      expect(token.scheme).toBe('Bearer')
      const claims = decodeJwt(token.value)
      expect(claims).toMatchObject({ aud: AUDIENCE, client_id: BASIC, scope: 'orders:read', iss: plain.issuer })
      expect(claims.cnf).toBeUndefined()
      expect(recorded.events).toEqual([
        expect.objectContaining({ type: 'token_request', service: 'orders', grant: 'client_credentials', binding: 'bearer', expiresIn: 300 }),
      ])
      expect(typeof recorded.events[0]!.durationMs).toBe('number')
    })

    it('private_key_jwt: the assertion is signed with the configured key (PEM or JWK, alg inferred)', async () => {
      const pem = createPrivateKey({ key: jwtKey.privateJwk as never, format: 'jwk' })
        .export({ type: 'pkcs8', format: 'pem' })
        .toString()
      for (const privateKey of [pem, jwtKey.privateJwk]) {
        const token = await source({ issuer: plain.issuer, clientId: JWT_CLIENT, auth: 'private_key_jwt', privateKey }).get(ORDERS)
        expect(decodeJwt(token.value)).toMatchObject({ aud: AUDIENCE, client_id: JWT_CLIENT })
      }
    })

    it('tls_client_auth: over the mTLS alias, a token bound to the certificate (cnf x5t#S256)', async () => {
      const recorded = recorder()
      const before = mtls.requests.length
      const tokens = source(
        { issuer: mtls.issuer, clientId: ID.frontend, auth: 'tls_client_auth', identity: {} },
        {
          identity: identityOf(frontend, ca.certPem),
          emit: recorded.emit,
        },
      )
      const token = await tokens.get(ORDERS)
      expect(decodeJwt(token.value)).toMatchObject({ aud: AUDIENCE, client_id: ID.frontend, cnf: { 'x5t#S256': frontend.x5tS256 } })
      expect(token.scheme).toBe('Bearer')
      expect(mtls.requests.slice(before).filter((line) => line.startsWith('POST'))).toEqual([`POST ${mtls.mtlsOrigin}/token (client certificate)`])
      expect(recorded.events[0]).toMatchObject({ type: 'token_request', binding: 'mtls' })
    })

    it('a refusal is an AuthorizationServerError with the server error, status and no secret', async () => {
      const wrong = 'not-the-secret-of-this-client-xxxxxxxxxxxxxxxx'
      const recorded = recorder()
      const error = await source({ ...basic(), clientSecret: wrong }, { emit: recorded.emit })
        .get(ORDERS)
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(AuthorizationServerError)
      expect(error).toMatchObject({ code: 'authorization_server_refused', error: 'invalid_client', status: 401, service: 'orders' })
      expect(JSON.stringify({ ...(error as object), message: (error as Error).message, cause: String((error as Error).cause) })).not.toContain(wrong)
      expect(recorded.events).toEqual([expect.objectContaining({ type: 'token_failure', code: 'authorization_server_refused', error: 'invalid_client' })])
    })
  })

  describe('DPoP (RFC 9449)', () => {
    it('a DPoP-bound token: cnf.jkt is the key thumbprint, scheme DPoP', async () => {
      const dpop = await createDpopKey(true)
      const recorded = recorder()
      const token = await source(basic(), { dpop, emit: recorded.emit }).get(ORDERS)
      expect(token.scheme).toBe('DPoP')
      expect(decodeJwt(token.value).cnf).toEqual({ jkt: dpop.thumbprint })
      expect(recorded.events[0]).toMatchObject({ type: 'token_request', binding: 'dpop' })
    })

    it('a nonce required at the token endpoint: exactly one retry, then the nonce is remembered', async () => {
      const op = await startOidcProvider({ clients: [{ client_id: BASIC, client_secret: secretFor(BASIC), scope: 'orders:read' }], dpopNonce: true })
      try {
        const dpop = await createDpopKey({ alg: 'ES256' })
        const recorded = recorder()
        const tokens = source(basic(op), { dpop, emit: recorded.emit })
        const token = await tokens.get(ORDERS)
        expect(decodeJwt(token.value).cnf).toEqual({ jkt: dpop.thumbprint })
        expect(op.tokenRequests()).toBe(2)
        expect(recorded.events.map((event) => [event.type, event.reason])).toEqual([
          ['retry', 'use_dpop_nonce'],
          ['token_request', undefined],
        ])
        // Another cache key: the nonce the server gave is sent at once.
        await tokens.get({ ...ORDERS, resource: RESOURCE.billing })
        expect(op.tokenRequests()).toBe(3)
        expect(recorded.count('retry')).toBe(1)
      } finally {
        await op.close()
      }
    })

    it('a DPoP key given as PEM or JWK keeps its algorithm; a generated private key is not extractable', async () => {
      const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey
      const es384 = await createDpopKey({ privateKey: p384.export({ format: 'jwk' }) })
      expect(es384.alg).toBe('ES384')
      expect(es384.thumbprint).toBe(await calculateJwkThumbprint(es384.publicJwk))
      const { privateKey } = generateKeyPairSync('ed25519')
      const imported = await createDpopKey({ privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() })
      expect(imported.alg).toBe('EdDSA')
      expect(imported.thumbprint).toBe(await calculateJwkThumbprint(imported.publicJwk))
      expect(imported.keyPair.privateKey.extractable).toBe(false)
      const generated = await createDpopKey(true)
      expect(generated.alg).toBe('ES256')
      expect(generated.keyPair.privateKey.extractable).toBe(false)
      expect(generated.publicJwk).not.toHaveProperty('d')
      const token = await source(basic(), { dpop: imported }).get(ORDERS)
      expect(decodeJwt(token.value).cnf).toEqual({ jkt: imported.thumbprint })
    })
  })

  describe('token exchange (RFC 8693)', () => {
    /** A token of the web client (the "user" of the call) for the orders service. */
    const subjectToken = async () => {
      const { access_token: value } = await plain.clientCredentials(
        { clientId: WEB, secret: secretFor(WEB) },
        { resource: RESOURCE.orders, scope: 'orders:read' },
      )
      return { value, expiresAt: decodeJwt(value).exp! }
    }

    it('exchanges the subject token for one scoped to the target service, with act', async () => {
      const subject = await subjectToken()
      const recorded = recorder()
      const token = await source(basic(), { emit: recorded.emit }).get({ service: 'billing', resource: RESOURCE.billing, scopes: ['orders:read'], subject })
      expect(decodeJwt(token.value)).toMatchObject({ aud: RESOURCE.billing, sub: WEB, act: { sub: BASIC }, client_id: BASIC })
      expect(recorded.events[0]).toMatchObject({ type: 'token_request', grant: 'token_exchange', service: 'billing' })
    })

    it('certificate-bound exchanged token over mTLS', async () => {
      const subject = await subjectToken()
      const tokens = source(
        { issuer: mtls.issuer, clientId: ID.frontend, auth: 'tls_client_auth', identity: {} },
        { identity: identityOf(frontend, ca.certPem) },
      )
      // The subject token comes from another provider instance: refused as invalid_grant.
      const foreign = await tokens.get({ ...ORDERS, subject }).catch((e: unknown) => e)
      expect(foreign).toMatchObject({ code: 'authorization_server_refused', error: 'invalid_grant' })
      const { access_token: local } = await mtls.clientCredentials(
        { clientId: ID.frontend, cert: frontend },
        { resource: RESOURCE.orders, scope: 'orders:read' },
      )
      const token = await tokens.get({ ...ORDERS, resource: RESOURCE.billing, subject: { value: local, expiresAt: decodeJwt(local).exp! } })
      expect(decodeJwt(token.value)).toMatchObject({ sub: ID.frontend, act: { sub: ID.frontend }, cnf: { 'x5t#S256': frontend.x5tS256 } })
    })

    it('an exchanged token never outlives its subject token; one per subject token', async () => {
      const time = clock()
      const tokens = source(basic(), { now: time.now })
      const before = plain.tokenRequests()
      const first = await subjectToken()
      // The subject token expires 100 s from now (on the injected clock).
      const subject = { value: first.value, expiresAt: Math.floor(time.now() / 1000) + 100 }
      const token = await tokens.get({ ...ORDERS, subject })
      expect(token.expiresAt).toBeLessThanOrEqual(subject.expiresAt * 1000 - 5000)
      expect(token.expiresAt).toBeGreaterThan(time.now())
      expect(await tokens.get({ ...ORDERS, subject })).toBe(token)
      // Another user, another token; the client's own token is another entry again.
      const second = await subjectToken()
      expect(await tokens.get({ ...ORDERS, subject: second })).not.toBe(token)
      expect(await tokens.get(ORDERS)).not.toBe(token)
      expect(plain.tokenRequests() - before).toBe(2 + 3)
    })

    it('a subject object whose value changes is keyed by its value each time (only frozen subjects have their hash kept)', async () => {
      const tokens = source(basic())
      const [alice, bob] = await Promise.all([subjectToken(), subjectToken()])
      const mutable = { ...alice }
      const forAlice = await tokens.get({ ...ORDERS, subject: mutable })
      Object.assign(mutable, bob)
      const forBob = await tokens.get({ ...ORDERS, subject: mutable })
      expect(forBob).not.toBe(forAlice)
      // A frozen subject (core's presentedToken) is the same token every time it is passed.
      const frozen = Object.freeze({ ...alice })
      expect(await tokens.get({ ...ORDERS, subject: frozen })).toBe(forAlice)
      expect(await tokens.get({ ...ORDERS, subject: frozen })).toBe(forAlice)
    })

    it('an expired subject token is not exchanged (no request)', async () => {
      const subject = await subjectToken()
      const before = plain.tokenRequests()
      const error = await source(basic())
        .get({ ...ORDERS, subject: { value: subject.value, expiresAt: Math.floor(Date.now() / 1000) - 1 } })
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(ClientError)
      expect(error).toMatchObject({ code: 'not_exchangeable' })
      expect(plain.tokenRequests()).toBe(before)
    })
  })

  describe('cache', () => {
    it('reuses a token per (resource, scopes, binding): scope order does not matter', async () => {
      const tokens = source(basic())
      const before = plain.tokenRequests()
      const token = await tokens.get({ ...ORDERS, scopes: ['orders:read', 'orders:write'] })
      expect(await tokens.get({ ...ORDERS, scopes: ['orders:write', 'orders:read'] })).toBe(token)
      expect(plain.tokenRequests() - before).toBe(1)
      await tokens.get({ ...ORDERS, scopes: ['orders:read'] })
      await tokens.get({ ...ORDERS, resource: RESOURCE.billing })
      expect(plain.tokenRequests() - before).toBe(3)
    })

    it('refreshes ahead of expiry in the background: the caller gets the cached token at once', async () => {
      const time = clock()
      const recorded = recorder()
      const tokens = source({ ...basic(), refreshAhead: 60 }, { now: time.now, emit: recorded.emit })
      const first = await tokens.get(ORDERS)
      const before = plain.tokenRequests()
      time.advance(239_000)
      expect(await tokens.get(ORDERS)).toBe(first)
      expect(plain.tokenRequests()).toBe(before)
      time.advance(2000) // 241 s of 300: within the last 60 s
      const refreshed = recorded.next('token_refresh')
      expect(await tokens.get(ORDERS)).toBe(first)
      expect(await tokens.get(ORDERS)).toBe(first) // one refresh, not one per call
      expect(await refreshed).toMatchObject({ type: 'token_refresh', grant: 'client_credentials', expiresIn: 300 })
      await new Promise(setImmediate) // the event comes just before the cache stores the token
      expect(plain.tokenRequests()).toBe(before + 1)
      const second = await tokens.get(ORDERS)
      expect(second).not.toBe(first)
      expect(second.value).not.toBe(first.value)
    })

    it('never returns a token past exp - expiryMargin', async () => {
      const time = clock()
      // No background refresh: refreshAhead 0.
      const tokens = source({ ...basic(), refreshAhead: 0, expiryMargin: 5 }, { now: time.now })
      const first = await tokens.get(ORDERS)
      expect(first.expiresAt).toBe(time.now() + 295_000)
      time.advance(294_999)
      expect(await tokens.get(ORDERS)).toBe(first)
      time.advance(1)
      const next = await tokens.get(ORDERS)
      expect(next).not.toBe(first)
      expect(next.expiresAt).toBeGreaterThan(time.now())
    })

    it('single flight: 1,000 concurrent cold calls make one token request', async () => {
      const tokens = source(basic())
      const before = plain.tokenRequests()
      const results = await Promise.all(Array.from({ length: 1000 }, () => tokens.get({ ...ORDERS, scopes: ['orders:write'] })))
      expect(plain.tokenRequests() - before).toBe(1)
      expect(new Set(results).size).toBe(1)
    })

    it('invalidate drops the token it names only', async () => {
      const tokens = source(basic())
      const first = await tokens.get(ORDERS)
      tokens.invalidate(ORDERS, first)
      const second = await tokens.get(ORDERS)
      expect(second).not.toBe(first)
      tokens.invalidate(ORDERS, first)
      expect(await tokens.get(ORDERS)).toBe(second)
    })

    it('a rotated certificate gets a new token bound to it', async () => {
      const identity = identityOf(frontend, ca.certPem)
      const tokens = source({ issuer: mtls.issuer, clientId: ID.frontend, auth: 'tls_client_auth', identity: {} }, { identity })
      const first = await tokens.get(ORDERS)
      expect(decodeJwt(first.value).cnf).toEqual({ 'x5t#S256': frontend.x5tS256 })
      identity.rotate(rotated)
      const second = await tokens.get(ORDERS)
      expect(decodeJwt(second.value).cnf).toEqual({ 'x5t#S256': rotated.x5tS256 })
      expect(await tokens.get(ORDERS)).toBe(second)
    })
  })

  describe('failures', () => {
    it('AS down after a token is cached: the token is served until exp, then the last error at once (backoff)', async () => {
      const op = await startOidcProvider({ clients: [{ client_id: BASIC, client_secret: secretFor(BASIC), scope: 'orders:read' }] })
      const time = clock()
      const recorded = recorder()
      const tokens = source(basic(op), { now: time.now, emit: recorded.emit })
      const first = await tokens.get(ORDERS)
      await op.close()
      time.advance(250_000) // refresh ahead: the background refresh fails
      const failed = recorded.next('token_failure')
      expect(await tokens.get(ORDERS)).toBe(first)
      expect(await failed).toMatchObject({ code: 'authorization_server_unavailable', grant: 'client_credentials' })
      // Within the backoff (≥ 0.8 s): no new attempt, the cached token is still served.
      time.advance(500)
      expect(await tokens.get(ORDERS)).toBe(first)
      expect(recorded.count('token_failure')).toBe(1)
      // Past exp - margin: one new attempt (the backoff ended long ago), then its error at once.
      time.advance(50_000)
      const down = await tokens.get(ORDERS).catch((e: unknown) => e)
      expect(down).toBeInstanceOf(AuthorizationServerUnavailableError)
      expect(down).toMatchObject({ reason: 'network' })
      expect(recorded.count('token_failure')).toBe(2)
      const again = await Promise.all(Array.from({ length: 50 }, () => tokens.get(ORDERS).catch((e: unknown) => e)))
      expect(new Set(again)).toEqual(new Set([down]))
      expect(recorded.count('token_failure')).toBe(2)
      // After the backoff: one new attempt.
      time.advance(2_500)
      await expect(tokens.get(ORDERS)).rejects.toBeInstanceOf(AuthorizationServerUnavailableError)
      expect(recorded.count('token_failure')).toBe(3)
    })
  })
})

describe('token side: options', () => {
  const valid = { issuer: 'https://auth.example.com', clientId: 'c', auth: 'client_secret_basic', clientSecret: 's' }

  it('resolves the defaults and ignores the options the call side owns', () => {
    const options = resolveTokenOptions({ ...valid, services: { orders: { url: 'https://x' } }, onEvent: () => {} })
    expect(options).toMatchObject({ clientId: 'c', insecure: false, timeout: 5000, refreshAhead: 60, expiryMargin: 5, cacheSize: 1000, identity: false })
    expect(options.issuer.href).toBe('https://auth.example.com/')
    expect(options.dpop).toBeUndefined()
    expect(resolveTokenOptions({ ...valid, issuer: 'http://127.0.0.1:8080' }).insecure).toBe(true)
    expect(resolveTokenOptions({ ...valid, dpop: true }).dpop).toEqual({ privateKey: undefined, alg: 'ES256' })
    expect(resolveTokenOptions(valid).issuerCa).toBe('identity')
    expect(resolveTokenOptions({ ...valid, issuerCa: 'system' }).issuerCa).toBe('system')
  })

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['issuer', { ...valid, issuer: 'http://auth.example.com' }, 'Callsign: "issuer" must be an https URL (http only for 127.0.0.1, localhost or ::1)'],
    ['issuer', { ...valid, issuer: 'nope' }, 'Callsign: "issuer" must be an https URL'],
    ['clientId', { ...valid, clientId: '' }, 'Callsign: "clientId" must be a non-empty string'],
    ['auth', { ...valid, auth: 'none' }, `Callsign: "auth" must be one of 'tls_client_auth', 'private_key_jwt', 'client_secret_basic' (got "none")`],
    ['clientSecret', { ...valid, clientSecret: undefined }, 'Callsign: "clientSecret" must be a non-empty string'],
    ['privateKey', { ...valid, privateKey: 'x' }, `Callsign: "privateKey" is not used with auth: 'client_secret_basic' (remove it)`],
    [
      'privateKey',
      { ...valid, auth: 'private_key_jwt', clientSecret: undefined, privateKey: 'not a pem' },
      'Callsign: "privateKey" is not a readable private key',
    ],
    ['identity', { ...valid, auth: 'tls_client_auth', clientSecret: undefined }, `Callsign: "identity" is required with auth: 'tls_client_auth'`],
    ['dpop', { ...valid, dpop: 'yes' }, 'Callsign: "dpop" must be true, false or { privateKey?, alg? }'],
    ['dpop.alg', { ...valid, dpop: { alg: 'HS256' } }, 'Callsign: "dpop.alg" must be one of'],
    ['dpop.key', { ...valid, dpop: { key: 'x' } }, 'Callsign: "dpop.key" is not a known option (known: privateKey, alg)'],
    ['timeout', { ...valid, timeout: 0 }, 'Callsign: "timeout" must be a whole number > 0 and <= 60000 (got 0)'],
    ['refreshAhead', { ...valid, refreshAhead: -1 }, 'Callsign: "refreshAhead" must be a number >= 0'],
    ['expiryMargin', { ...valid, expiryMargin: '5' }, 'Callsign: "expiryMargin" must be a number >= 0'],
    ['cacheSize', { ...valid, cacheSize: 1.5 }, 'Callsign: "cacheSize" must be a whole number > 0'],
    ['issuerCa', { ...valid, issuerCa: 'public' }, 'Callsign: "issuerCa" must hold PEM certificates'],
    ['issuerCa', { ...valid, issuerCa: [] }, `Callsign: "issuerCa" must be 'system' or the authorization server's CA certificates as PEM`],
    ['issuerCa', { ...valid, issuerCa: { path: 'ca.pem' } }, `Callsign: "issuerCa" must be 'system' or`],
    [
      'issuerCa',
      { ...valid, issuerCa: '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----' },
      'Callsign: "issuerCa" holds a PEM certificate that cannot be read',
    ],
  ]
  it.each(bad)('refuses a bad %s', (_option, options, message) => {
    expect(() => resolveTokenOptions(options)).toThrow(TypeError)
    expect(() => resolveTokenOptions(options)).toThrow(message)
  })

  it('refuses a DPoP key that cannot sign with the alg asked for, and never echoes the key', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expect(() => resolveTokenOptions({ ...valid, dpop: { privateKey: pem, alg: 'RS256' } })).toThrow(
      'Callsign: "dpop.privateKey" cannot sign with "RS256" (a ec key: ES256)',
    )
    try {
      resolveTokenOptions({ ...valid, auth: 'private_key_jwt', clientSecret: undefined, privateKey: pem.replace('PRIVATE KEY-----\n', 'PRIVATE KEY-----\nx') })
    } catch (error) {
      expect((error as Error).message).not.toContain(pem.split('\n')[1]!.slice(0, 20))
    }
  })
})
