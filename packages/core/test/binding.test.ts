import { X509Certificate } from 'node:crypto'
import { createTestCa, type IssuedCertificate } from '@callsign/testing'
import { beforeAll, describe, expect, it } from 'vitest'
import type { AccessTokenClaims, VerifiedToken } from '../src/access-token.js'
import { checkBinding } from '../src/binding.js'
import { AuthError } from '../src/errors.js'
import { resolveConfig } from '../src/options.js'
import { describeCertificate, type PeerCertificate } from '../src/peer-certificate.js'

const ISSUER = 'https://auth.example.com/'
const config = resolveConfig({ issuers: { issuer: ISSUER, audience: 'orders' } })
const resolved = config.issuers.get(ISSUER)!
const REQUEST = { method: 'GET', url: '/orders', headers: { host: 'orders.example' } }
const BEARER = { scheme: 'bearer', token: 'x.y.z', compact: true } as const

let svid: IssuedCertificate
let peer: PeerCertificate
let otherPeer: PeerCertificate

beforeAll(async () => {
  const ca = await createTestCa()
  svid = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' })
  peer = describeCertificate(new X509Certificate(svid.certPem))
  otherPeer = describeCertificate(new X509Certificate((await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' })).certPem))
})

const token = (cnf?: unknown): VerifiedToken => ({
  claims: { iss: ISSUER, exp: 2_000_000_000, sub: 'x', ...(cnf === undefined ? {} : { cnf }) } as AccessTokenClaims,
  issuer: resolved,
  scopes: [],
  actors: [],
})

// The shape of `cnf` (enforced methods only, non-empty strings) is a claim rule, checked once at
// verification for JWTs and introspected tokens alike: see access-token.test.ts and introspection.test.ts.
describe('checkBinding', () => {
  it('computes the same RFC 8705 thumbprint as the issuing CA', () => {
    expect(peer.x5tS256).toBe(svid.x5tS256)
  })

  it.each<[string, unknown, 'peer' | 'none']>([
    ['no cnf, no certificate', undefined, 'none'],
    ['no cnf over mTLS', undefined, 'peer'],
  ])('reports bearer for %s', async (_case, cnf, connection) => {
    expect(await checkBinding(token(cnf), BEARER, connection === 'peer' ? peer : undefined, REQUEST, config)).toBe('bearer')
  })

  it('reports mtls for a token bound to the connection certificate', async () => {
    expect(await checkBinding(token({ 'x5t#S256': svid.x5tS256 }), BEARER, peer, REQUEST, config)).toBe('mtls')
  })

  it.each<[string, () => unknown, 'peer' | 'other' | 'none', string]>([
    ['a DPoP-bound token presented as Bearer', () => ({ jkt: 'abc' }), 'peer', 'DPoP-bound token presented as a bearer token'],
    [
      'a token bound to both DPoP and the certificate',
      () => ({ jkt: 'abc', 'x5t#S256': svid.x5tS256 }),
      'peer',
      'DPoP-bound token presented as a bearer token',
    ],
    [
      'a certificate-bound token without a certificate',
      () => ({ 'x5t#S256': svid.x5tS256 }),
      'none',
      'certificate-bound token presented without a client certificate',
    ],
    ['a token bound to another certificate', () => ({ 'x5t#S256': svid.x5tS256 }), 'other', 'token is bound to another client certificate'],
    ['a thumbprint differing in case', () => ({ 'x5t#S256': svid.x5tS256.toUpperCase() }), 'peer', 'token is bound to another client certificate'],
  ])('refuses %s', async (_case, cnf, connection, message) => {
    const p = connection === 'peer' ? peer : connection === 'other' ? otherPeer : undefined
    let error: unknown
    try {
      await checkBinding(token(cnf()), BEARER, p, REQUEST, config)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(AuthError)
    expect({ code: (error as AuthError).code, message: (error as AuthError).message }).toEqual({ code: 'invalid_token', message })
  })

  it.each<[string, Parameters<typeof resolveConfig>[0]['senderConstraint'], Parameters<typeof resolveConfig>[0]['dpop'], string]>([
    ['senderConstraint required', 'required', undefined, 'a sender-constrained token is required'],
    ['dpop required', undefined, { mode: 'required' }, 'a DPoP-bound token is required'],
  ])('refuses a plain bearer token when %s', async (_case, senderConstraint, dpop, message) => {
    const strict = resolveConfig({
      issuers: { issuer: ISSUER, audience: 'orders' },
      ...(senderConstraint ? { senderConstraint } : {}),
      ...(dpop ? { dpop } : {}),
    })
    await expect(async () => checkBinding(token(), BEARER, peer, REQUEST, strict)).rejects.toMatchObject({ code: 'invalid_token', message })
  })

  it('accepts a certificate-bound token when sender constraint is required', async () => {
    const strict = resolveConfig({ issuers: { issuer: ISSUER, audience: 'orders' }, senderConstraint: 'required' })
    expect(await checkBinding(token({ 'x5t#S256': svid.x5tS256 }), BEARER, peer, REQUEST, strict)).toBe('mtls')
  })

  it('refuses the DPoP scheme with a token that is not DPoP-bound', async () => {
    await expect(async () =>
      checkBinding(token(), { scheme: 'dpop', token: 'x.y.z', compact: true, proof: 'a.b.c' }, peer, REQUEST, config),
    ).rejects.toMatchObject({
      code: 'invalid_token',
      message: 'DPoP scheme used with a token that is not DPoP-bound',
    })
  })
})
