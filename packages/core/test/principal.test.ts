import { inspect } from 'node:util'
import { describe, expect, it } from 'vitest'
import type { AccessTokenClaims, VerifiedToken } from '../src/access-token.js'
import { AuthError } from '../src/errors.js'
import { resolveConfig } from '../src/options.js'
import type { PeerCertificate } from '../src/peer-certificate.js'
import { certificateAuthContext, presentedToken, toAuthContext } from '../src/principal.js'

const ISSUER = 'https://auth.example.com/'
const resolved = resolveConfig({ issuers: { issuer: ISSUER, audience: 'orders' } }).issuers.get(ISSUER)!
const WEB = 'spiffe://example.org/ns/web/sa/frontend'
const GATEWAY = 'spiffe://example.org/ns/edge/sa/gateway'

const peer = (spiffeId?: string): PeerCertificate => ({
  ...(spiffeId === undefined ? {} : { spiffeId }),
  uris: spiffeId === undefined ? [] : [spiffeId],
  dnsNames: [],
  subject: 'CN=x',
  x5tS256: 'thumb',
  validTo: new Date(0),
})

function token(claims: Partial<AccessTokenClaims>, actors: string[] = [], scopes: string[] = []): VerifiedToken {
  return { claims: { iss: ISSUER, exp: 2_000_000_000, ...claims } as AccessTokenClaims, issuer: resolved, scopes, actors }
}

describe('toAuthContext', () => {
  it('builds the context of a service call proven by mTLS', () => {
    const verified = token({ sub: WEB, client_id: WEB, scope: 'a b' }, [], ['a', 'b'])
    const p = peer(WEB)
    const auth = toAuthContext(verified, p, 'mtls')
    expect(auth).toEqual({
      caller: { id: WEB, source: 'mtls' },
      scopes: ['a', 'b'],
      actors: [],
      binding: 'mtls',
      peer: p,
      credential: 'token',
      issuer: ISSUER,
      claims: verified.claims,
    })
    expect(auth.claims).toBe(verified.claims)
    expect('user' in auth).toBe(false)
  })

  it('builds the context of a call authenticated by its certificate alone: no user, no issuer, no claims', () => {
    const p = peer(WEB)
    const auth = certificateAuthContext(p as typeof p & { spiffeId: string }, new Set(['a']))
    expect(auth).toEqual({ caller: { id: WEB, source: 'mtls' }, scopes: ['a'], actors: [], binding: 'mtls', peer: p, credential: 'certificate' })
    const forwarded = { ...p, verification: 'forwarded-certificate' as const, spiffeId: WEB }
    expect(certificateAuthContext(forwarded, []).caller).toEqual({ id: WEB, source: 'forwarded' })
  })

  it('takes the caller from the peer SPIFFE ID over anything the token says', () => {
    const auth = toAuthContext(token({ sub: 'user:alice', client_id: 'other-client', act: { sub: GATEWAY } }, [GATEWAY]), peer(WEB), 'bearer')
    expect(auth.caller).toEqual({ id: WEB, source: 'mtls' })
    expect(auth.user).toEqual({ sub: 'user:alice' })
    expect(auth.actors).toEqual([GATEWAY])
  })

  it.each<[string, Partial<AccessTokenClaims>, string[], string]>([
    ['the nearest actor first', { sub: 'user:alice', client_id: 'c', azp: 'z', act: { sub: WEB, act: { sub: GATEWAY } } }, [WEB, GATEWAY], WEB],
    ['then client_id', { sub: 'user:alice', client_id: 'orders-client', azp: 'z' }, [], 'orders-client'],
    ['then azp', { sub: 'user:alice', azp: 'web-app' }, [], 'web-app'],
    ['then sub', { sub: WEB }, [], WEB],
  ])('takes the token caller from %s when there is no SPIFFE peer', (_case, claims, actors, caller) => {
    expect(toAuthContext(token(claims, actors), undefined, 'bearer').caller).toEqual({ id: caller, source: 'token' })
    // A certificate without a SPIFFE ID does not name the caller either, but is still exposed.
    const withPeer = toAuthContext(token(claims, actors), peer(), 'bearer')
    expect(withPeer.caller).toEqual({ id: caller, source: 'token' })
    expect(withPeer.peer).toEqual(peer())
  })

  it.each<[string, Partial<AccessTokenClaims>, string[], string | undefined]>([
    ['an act claim', { sub: 'user:alice', act: { sub: WEB } }, [WEB], 'user:alice'],
    ['a client_id different from sub', { sub: 'user:alice', client_id: WEB }, [], 'user:alice'],
    ['a client_id equal to sub (service token)', { sub: WEB, client_id: WEB }, [], undefined],
    ['only sub (service token)', { sub: WEB }, [], undefined],
    ['an azp different from sub', { sub: WEB, azp: 'web-app' }, [], undefined],
  ])('derives the user from %s', (_case, claims, actors, user) => {
    const auth = toAuthContext(token(claims, actors), undefined, 'bearer')
    expect(auth.user).toEqual(user === undefined ? undefined : { sub: user })
  })

  it.each<[string, Partial<AccessTokenClaims>, string[], string]>([
    ['a token naming no client at all', {}, [], 'token names no calling client'],
    ['an on-behalf-of token (act) without sub', { act: { sub: WEB } }, [WEB], 'on-behalf-of token names no subject'],
  ])('refuses %s', (_case, claims, actors, message) => {
    expect(() => toAuthContext(token(claims, actors), undefined, 'bearer')).toThrow(new AuthError('invalid_token', message))
    try {
      toAuthContext(token(claims, actors), undefined, 'bearer')
    } catch (error) {
      expect((error as AuthError).code).toBe('invalid_token')
    }
  })

  it('treats a client_id without sub (a client-credentials token) as the client acting for itself', () => {
    const auth = toAuthContext(token({ client_id: WEB }), undefined, 'bearer')
    expect(auth.caller).toEqual({ id: WEB, source: 'token' })
    expect(auth).not.toHaveProperty('user')
    expect(toAuthContext(token({ client_id: 'c' }), peer(WEB), 'bearer').caller).toEqual({ id: WEB, source: 'mtls' })
  })
})

describe('presentedToken', () => {
  const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3ZWIifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg'

  it('returns the token the context was built from, with its exp', () => {
    const auth = toAuthContext(token({ client_id: WEB, exp: 1_900_000_000 }), undefined, 'bearer', TOKEN)
    expect(presentedToken(auth)).toEqual({ value: TOKEN, expiresAt: 1_900_000_000 })
    expect(Object.isFrozen(presentedToken(auth))).toBe(true)
  })

  it('has no expiry for a token without exp (an introspected one)', () => {
    const { exp: _, ...claims } = token({ client_id: WEB }).claims
    const auth = toAuthContext({ ...token({}), claims: claims as AccessTokenClaims }, undefined, 'bearer', TOKEN)
    expect(presentedToken(auth)).toEqual({ value: TOKEN, expiresAt: undefined })
  })

  it('returns undefined for a certificate-only context, a context built without a token, null, undefined and serialized copies', () => {
    const p = peer(WEB) as PeerCertificate & { spiffeId: string }
    expect(presentedToken(certificateAuthContext(p, ['a']))).toBeUndefined()
    expect(presentedToken(toAuthContext(token({ client_id: WEB }), undefined, 'bearer'))).toBeUndefined()
    expect(presentedToken(null)).toBeUndefined()
    expect(presentedToken(undefined)).toBeUndefined()
    const auth = toAuthContext(token({ client_id: WEB }), undefined, 'bearer', TOKEN)
    expect(presentedToken(structuredClone(auth))).toBeUndefined()
    expect(presentedToken(JSON.parse(JSON.stringify(auth)) as typeof auth)).toBeUndefined()
    // Claims that look the same are not the verified ones.
    expect(presentedToken({ ...auth, claims: { ...auth.claims } })).toBeUndefined()
  })

  it('follows a spread copy of the context (it holds the verified claims object)', () => {
    const auth = toAuthContext(token({ client_id: WEB }), undefined, 'bearer', TOKEN)
    expect(presentedToken({ ...auth, scopes: [...auth.scopes, 'extra'] })?.value).toBe(TOKEN)
  })

  it('never puts the token on the context: JSON, inspect, clone and keys do not hold it', () => {
    const auth = toAuthContext(token({ client_id: WEB }), peer(WEB), 'mtls', TOKEN)
    expect(JSON.stringify(auth)).not.toContain(TOKEN)
    expect(inspect(auth, { depth: Infinity, showHidden: true })).not.toContain(TOKEN)
    expect(JSON.stringify(structuredClone(auth))).not.toContain(TOKEN)
    expect(Reflect.ownKeys(auth)).not.toContain('token')
  })

  it('keeps one entry per verified token: the contexts of requests that reuse a cached token share it (nothing is added per request)', () => {
    const verified = token({ client_id: WEB })
    const first = toAuthContext(verified, undefined, 'bearer', TOKEN)
    const second = toAuthContext(verified, peer(WEB), 'mtls', TOKEN)
    expect(first).not.toBe(second)
    expect(presentedToken(first)?.value).toBe(TOKEN)
    expect(presentedToken(second)).toBe(presentedToken(first))
    // Another verification of another token has its own claims object, so its own entry.
    expect(presentedToken(toAuthContext(token({ client_id: WEB }), undefined, 'bearer', `${TOKEN}x`))?.value).toBe(`${TOKEN}x`)
  })
})
