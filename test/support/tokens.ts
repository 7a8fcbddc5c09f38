/** Hand-made and forged tokens the test issuer will not mint. */
import { SignJWT } from 'jose'
import type { TestIssuer } from '@callsign/testing'
import { AUDIENCE } from './fixtures.js'

const segment = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/** Standard claims of a short-lived token of `issuer` for {@link AUDIENCE}. */
export function baseClaims(issuer: TestIssuer, claims: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return { iss: issuer.issuer, aud: AUDIENCE, iat: now, exp: now + 300, ...claims }
}

/** An unsecured JWS (`alg: none`, RFC 7515 §A.5): empty signature. */
export function unsecuredToken(issuer: TestIssuer, claims: Record<string, unknown>): string {
  return `${segment({ alg: 'none', typ: 'at+jwt' })}.${segment(baseClaims(issuer, claims))}.`
}

/**
 * Key confusion: HS256 with the issuer's *public* JWK (as published in its JWKS) as the HMAC
 * secret, under the issuer's `kid`. A verifier that lets the token pick the algorithm accepts it.
 */
export function hmacWithPublicKey(issuer: TestIssuer, claims: Record<string, unknown>): Promise<string> {
  const jwk = issuer.publicJwks().keys.find((key) => key.kid === issuer.currentKid)
  if (!jwk) throw new Error('issuer has no current key in its JWKS')
  return new SignJWT(baseClaims(issuer, claims))
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: issuer.currentKid })
    .sign(new TextEncoder().encode(JSON.stringify(jwk)))
}

/** The claims of a compact JWS, unverified. */
export function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>
}

/** Change claims of a signed token and keep its (now wrong) signature. */
export function tamper(token: string, change: (claims: Record<string, unknown>) => void): string {
  const [header, , signature] = token.split('.')
  const claims = claimsOf(token)
  change(claims)
  return `${header}.${segment(claims)}.${signature}`
}

/** A JWE compact serialization shape (5 parts); never decrypted by a resource server. */
export const JWE_SHAPED_TOKEN = `${segment({ alg: 'RSA-OAEP-256', enc: 'A256GCM', typ: 'at+jwt' })}.a2V5.aXY.Y2lwaGVydGV4dA.dGFn`
