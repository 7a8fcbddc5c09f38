// guard.check(): the decision without a promise when it needs no I/O, a promise when it does.
// Adapters rely on this on their hot path; the decision itself must be the same either way.
import { createDpopKey, createDpopProof, startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuthError, afterCheck, authorizeRequest, compileRule, createCallsign, type AuthRequest, type CallsignOptions } from '../src/index.js'

const AUD = 'https://orders.example'
const CALLER = 'spiffe://example.org/ns/web/sa/frontend'
let issuer: TestIssuer
beforeAll(async () => {
  issuer = await startTestIssuer()
})
afterAll(async () => {
  await issuer?.close()
})

const guardFor = (extra: Partial<CallsignOptions> = {}) =>
  createCallsign({ issuers: { issuer: issuer.issuer, audience: AUD, jwksUri: issuer.jwksUri }, logger: { warn() {} }, ...extra })
const request = (authorization?: string, extra: Partial<AuthRequest> = {}): AuthRequest => ({
  method: 'GET',
  url: '/orders',
  headers: authorization === undefined ? { host: 'api.example' } : { host: 'api.example', authorization },
  socket: {},
  ...extra,
})
const sign = (claims: Record<string, unknown> = {}, options: Parameters<TestIssuer['signAccessToken']>[1] = {}) =>
  issuer.signAccessToken({ sub: CALLER, client_id: CALLER, scope: 'orders:read', ...claims }, { audience: AUD, ...options })
const readRule = compileRule({ scopes: ['orders:read'] })

describe('guard.check', () => {
  it('returns a promise while the keys are fetched, then decides fresh and cached tokens synchronously', async () => {
    const guard = guardFor()
    const first = guard.check(request(`Bearer ${await sign()}`))
    expect(first).toBeInstanceOf(Promise)
    expect(await first).toMatchObject({ caller: { id: CALLER, source: 'token' }, scopes: ['orders:read'] })
    const fetched = issuer.requests.length

    const fresh = await sign()
    const req = request(`Bearer ${fresh}`)
    const auth = guard.check(req)
    expect(auth).not.toBeInstanceOf(Promise)
    expect(auth).toMatchObject({ credential: 'token', caller: { id: CALLER }, binding: 'bearer' })
    // requireAuth finds the decision recorded on the request.
    expect(authorizeRequest(req, readRule)).toBe(auth)
    // Reused: the second verification admits it to the cache, the third is a hit; all synchronous.
    for (let i = 0; i < 3; i++) expect(guard.check(request(`Bearer ${fresh}`))).toMatchObject({ caller: { id: CALLER } })
    expect(issuer.requests.length).toBe(fetched)
  })

  it("makes a verified token read-only, deeply: a handler that changes one request's auth changes no other request's", async () => {
    const guard = guardFor()
    const token = await sign({ tenant: { id: 't-1', roles: ['reader'] } })
    const writeRule = compileRule({ scopes: ['orders:write'] })
    // Verified, verified again and admitted to the cache, then served from it: the same claims object each time after.
    for (let i = 0; i < 4; i++) {
      const req = request(`Bearer ${token}`)
      const auth = await guard.check(req)
      if (auth?.credential !== 'token') throw new Error('expected a token auth context')
      expect(() => auth.scopes.push('orders:write')).toThrow(TypeError)
      expect(() => Object.assign(auth.claims, { scope: 'orders:read orders:write' })).toThrow(TypeError)
      expect(() => (auth.claims.tenant as { roles: string[] }).roles.push('admin')).toThrow(TypeError)
      expect(() => authorizeRequest(req, writeRule)).toThrow(expect.objectContaining({ code: 'insufficient_scope' }))
      // The context itself is the request's own.
      auth.caller.id = 'changed by a handler'
    }
    expect(guard.check(request(`Bearer ${token}`))).toMatchObject({
      caller: { id: CALLER },
      scopes: ['orders:read'],
      claims: { scope: 'orders:read', tenant: { roles: ['reader'] } },
    })
  })

  it('freezes claims nested thousands deep (past the recursion depth) without overflowing the stack', async () => {
    const guard = guardFor()
    let deep: unknown[] = [{ bottom: true }]
    for (let i = 0; i < 3000; i++) deep = [deep]
    const auth = await guard.check(request(`Bearer ${await sign({ deep })}`))
    if (auth?.credential !== 'token') throw new Error('expected a token auth context')
    let depth = 0
    let node = auth.claims.deep as unknown[]
    for (; Array.isArray(node[0]); node = node[0] as unknown[]) {
      expect(Object.isFrozen(node)).toBe(true)
      depth++
    }
    expect(depth).toBe(3000)
    expect(node[0]).toEqual({ bottom: true })
    expect(Object.isFrozen(node) && Object.isFrozen(node[0])).toBe(true)
  })

  it('throws refusals synchronously, with the challenge, and records them for requireAuth in dry run', async () => {
    const guard = guardFor()
    await guard.check(request(`Bearer ${await sign()}`)) // keys cached
    const cases: Array<[string | undefined, string, number]> = [
      ['Bearer not a token!', 'invalid_request', 400],
      ['Bearer a.b.c', 'invalid_token', 401],
      [`Bearer ${await sign({}, { audience: 'https://other.example' })}`, 'invalid_token', 401],
      [undefined, 'credentials_missing', 401],
    ]
    for (const [authorization, code, status] of cases) {
      let thrown: unknown
      try {
        guard.check(request(authorization))
      } catch (error) {
        thrown = error
      }
      expect(thrown).toBeInstanceOf(AuthError)
      expect(thrown).toMatchObject({ code, status })
      expect((thrown as AuthError).headers['www-authenticate']).toMatch(/^Bearer /)
    }
    // authenticate() keeps its contract: always a promise, refusals as rejections.
    const pending = guard.authenticate(request('Bearer a.b.c'))
    expect(pending).toBeInstanceOf(Promise)
    await expect(pending).rejects.toMatchObject({ code: 'invalid_token' })

    const dryRun = guardFor({ enforce: false })
    const req = request('Bearer a.b.c')
    expect(dryRun.check(req)).toBeUndefined()
    expect(() => authorizeRequest(req, compileRule({ scopes: ['orders:read'], enforce: true }))).toThrow(expect.objectContaining({ code: 'invalid_token' }))
  })

  it('serves a cached token only for exactly the same string: a forgery that copies its end is verified, refused, and evicts nothing', async () => {
    const guard = guardFor()
    const token = await sign()
    for (let i = 0; i < 3; i++) await guard.check(request(`Bearer ${token}`))
    const [header, , signature] = token.split('.') as [string, string, string]
    const forgedPayload = Buffer.from(
      JSON.stringify({ iss: issuer.issuer, aud: AUD, sub: 'root', client_id: 'root', scope: 'admin', exp: 4_000_000_000 }),
    ).toString('base64url')
    expect(() => guard.check(request(`Bearer ${header}.${forgedPayload}.${signature}`))).toThrow(
      expect.objectContaining({ code: 'invalid_token', message: 'signature verification failed' }),
    )
    // A token differing only before its last 32 characters (its signature's start) is not the cached one either.
    const altered = `${header}.${token.split('.')[1]}.${(signature[0] === 'A' ? 'B' : 'A') + signature.slice(1)}`
    expect(() => guard.check(request(`Bearer ${altered}`))).toThrow(expect.objectContaining({ message: 'signature verification failed' }))
    expect(guard.check(request(`Bearer ${token}`))).toMatchObject({ caller: { id: CALLER } })
  })

  it('returns a promise for DPoP (the proof is checked and its jti recorded), with the same result', async () => {
    const guard = guardFor()
    const key = await createDpopKey()
    const token = await sign({}, { dpopJkt: key.jkt })
    const url = 'http://api.example/orders'
    const req = request(`DPoP ${token}`)
    req.headers.dpop = await createDpopProof(key, { method: 'GET', url, accessToken: token })
    const result = guard.check(req)
    expect(result).toBeInstanceOf(Promise)
    expect(await result).toMatchObject({ binding: 'dpop', caller: { id: CALLER } })
    // The same proof again is a replay, refused through the promise.
    const again = request(`DPoP ${token}`)
    again.headers.dpop = req.headers.dpop
    await expect(guard.check(again)).rejects.toMatchObject({ code: 'invalid_dpop_proof' })
  })

  it('fails closed when a store rejects without a reason: never an anonymous success', async () => {
    const guard = guardFor({ dpop: { replayStore: { markUsed: () => Promise.reject(undefined) } } })
    const key = await createDpopKey()
    const token = await sign({}, { dpopJkt: key.jkt })
    const req = request(`DPoP ${token}`)
    req.headers.dpop = await createDpopProof(key, { method: 'GET', url: 'http://api.example/orders', accessToken: token })
    await expect(Promise.resolve(guard.check(req))).rejects.toBeDefined()
    expect(() => authorizeRequest(req, readRule)).toThrow()
  })

  it('turns anything thrown that is not a refusal into an Error (a falsy one would read as success to a framework)', async () => {
    const thrower = createCallsign({
      issuers: { issuer: issuer.issuer, audience: AUD, jwksUri: issuer.jwksUri },
      // The key fetch fails, and the logger then throws `undefined` while reporting it.
      fetch: (() => Promise.reject(new Error('network down'))) as unknown as typeof fetch,
      logger: {
        warn() {
          throw undefined
        },
      },
    })
    const outcome = await Promise.resolve(thrower.check(request(`Bearer ${await sign()}`))).then(
      () => 'resolved',
      (error: unknown) => error,
    )
    expect(outcome).toBeInstanceOf(Error)
    expect(outcome).not.toBeInstanceOf(AuthError)
    expect((outcome as Error).message).toBe('Callsign: authentication failed: undefined')
  })

  it('afterCheck calls accept or refuse at once when no promise is needed, and after the promise otherwise', async () => {
    const guard = guardFor()
    const token = await sign()
    const first = afterCheck(
      guard,
      request(`Bearer ${token}`),
      (auth) => auth?.caller.id,
      (error) => error,
    )
    expect(first).toBeInstanceOf(Promise) // keys fetched
    expect(await first).toBe(CALLER)
    expect(
      afterCheck(
        guard,
        request(`Bearer ${token}`),
        (auth) => auth?.caller.id,
        () => 'refused',
      ),
    ).toBe(CALLER)
    expect(
      afterCheck(
        guard,
        request('Bearer a.b.c'),
        () => 'accepted',
        (error) => (error as AuthError).code,
      ),
    ).toBe('invalid_token')
  })
})
