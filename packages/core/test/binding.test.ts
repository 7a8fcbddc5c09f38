import { X509Certificate } from 'node:crypto'
import { createTestCa, type IssuedCertificate } from '@callsign/testing'
import { beforeAll, describe, expect, it } from 'vitest'
import type { AccessTokenClaims, VerifiedToken } from '../src/access-token.js'
import { checkBinding } from '../src/binding.js'
import { AuthError } from '../src/errors.js'
import { resolveConfig } from '../src/options.js'
import { describeCertificate, type PeerCertificate } from '../src/peer-certificate.js'

const ISSUER = 'https://auth.example.com/'
const resolved = resolveConfig({ issuers: { issuer: ISSUER, audience: 'orders' } }).issuers.get(ISSUER)!
const BEARER = { scheme: 'bearer', token: 'x.y.z' } as const

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

describe('checkBinding', () => {
  it('computes the same RFC 8705 thumbprint as the issuing CA', () => {
    expect(peer.x5tS256).toBe(svid.x5tS256)
  })

  it.each<[string, unknown, 'peer' | 'none']>([
    ['no cnf, no certificate', undefined, 'none'],
    ['no cnf over mTLS', undefined, 'peer'],
    ['an empty cnf', {}, 'peer'],
    ['a cnf with other members only', { kid: 'k' }, 'none'],
  ])('reports bearer for %s', (_case, cnf, connection) => {
    expect(checkBinding(token(cnf), BEARER, connection === 'peer' ? peer : undefined)).toBe('bearer')
  })

  it('reports mtls for a token bound to the connection certificate', () => {
    expect(checkBinding(token({ 'x5t#S256': svid.x5tS256 }), BEARER, peer)).toBe('mtls')
  })

  it.each<[string, () => unknown, 'peer' | 'other' | 'none', string]>([
    ['a DPoP-bound token presented as Bearer', () => ({ jkt: 'abc' }), 'peer', 'DPoP-bound token presented as a bearer token'],
    ['a token bound to both DPoP and the certificate', () => ({ jkt: 'abc', 'x5t#S256': svid.x5tS256 }), 'peer', 'DPoP-bound token presented as a bearer token'],
    ['a certificate-bound token without a certificate', () => ({ 'x5t#S256': svid.x5tS256 }), 'none', 'certificate-bound token presented without a client certificate'],
    ['a token bound to another certificate', () => ({ 'x5t#S256': svid.x5tS256 }), 'other', 'token is bound to another client certificate'],
    ['a thumbprint differing in case', () => ({ 'x5t#S256': svid.x5tS256.toUpperCase() }), 'peer', 'token is bound to another client certificate'],
    ['an empty thumbprint', () => ({ 'x5t#S256': '' }), 'peer', 'token is bound to another client certificate'],
    ['a numeric thumbprint', () => ({ 'x5t#S256': 1 }), 'peer', 'malformed cnf claim'],
    ['a null thumbprint', () => ({ 'x5t#S256': null }), 'peer', 'malformed cnf claim'],
  ])('refuses %s', (_case, cnf, connection, message) => {
    const p = connection === 'peer' ? peer : connection === 'other' ? otherPeer : undefined
    let error: unknown
    try {
      checkBinding(token(cnf()), BEARER, p)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(AuthError)
    expect({ code: (error as AuthError).code, message: (error as AuthError).message }).toEqual({ code: 'invalid_token', message })
  })
})
