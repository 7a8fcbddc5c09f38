import { timingSafeEqual, createHash } from 'node:crypto'
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose'
import type { ClientCertificate } from './token-client-certificate.js'
import type { ResolvedClient } from './token-endpoint-options.js'
import { TokenError } from './token-error.js'

/** RFC 7523 §2.2 client assertion type. */
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
/**
 * Algorithms of client assertions: asymmetric only (no HS256 keyed with a public key, no `none`).
 *
 * @internal
 */
export const ASSERTION_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512']

/**
 * What the token endpoint knows about a request when it authenticates the client.
 *
 * @internal
 */
export interface ClientAuthInput {
  form: URLSearchParams
  /** Every `Authorization` header sent (Node keeps only the first in `req.headers`). */
  authorization: readonly string[]
  certificate: ClientCertificate | undefined
  clients: ReadonlyMap<string, ResolvedClient>
  /** Accepted `aud` values of a client assertion: the issuer and the token endpoint. */
  audiences: string[]
  issuer: string
}

/**
 * Authenticates the client of a token request with the one method it used (RFC 6749 §2.3:
 * never more than one) and the method it is registered with.
 *
 * @returns The client.
 * @throws TokenError `invalid_client` (401; with a Basic challenge when Basic was used) or `invalid_request`.
 * @internal
 */
export async function authenticateClient(input: ClientAuthInput, usedAssertions: AssertionLedger): Promise<ResolvedClient> {
  const { form, authorization } = input
  if (authorization.length > 1) throw new TokenError(400, 'invalid_request', 'more than one Authorization header')
  const basic = authorization[0]
  const assertionType = form.get('client_assertion_type')
  if (basic !== undefined && assertionType !== null) throw new TokenError(400, 'invalid_request', 'more than one client authentication method')
  if (basic !== undefined) return authenticateBasic(basic, input)
  if (assertionType !== null) return authenticateAssertion(input, usedAssertions)
  return authenticateCertificate(input)
}

function authenticateBasic(header: string, input: ClientAuthInput): ResolvedClient {
  const refuse = (description: string): TokenError =>
    new TokenError(401, 'invalid_client', description, {
      'www-authenticate': `Basic realm="${input.issuer}", error="invalid_client", error_description="${description}"`,
    })
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/i.exec(header)
  if (!match) throw refuse('malformed Basic credentials')
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) throw refuse('malformed Basic credentials')
  const clientId = formDecode(decoded.slice(0, colon))
  const secret = formDecode(decoded.slice(colon + 1))
  const client = clientId === undefined ? undefined : input.clients.get(clientId)
  const bodyId = input.form.get('client_id')
  if (bodyId !== null && bodyId !== clientId) throw new TokenError(400, 'invalid_request', 'client_id differs from the authenticated client')
  if (!client || client.auth !== 'client_secret_basic' || secret === undefined || !sameSecret(secret, client.clientSecret ?? '')) {
    throw refuse('client authentication failed')
  }
  return client
}

async function authenticateAssertion(input: ClientAuthInput, used: AssertionLedger): Promise<ResolvedClient> {
  const { form } = input
  const assertion = form.get('client_assertion')
  if (form.get('client_assertion_type') !== JWT_BEARER || assertion === null) {
    throw new TokenError(400, 'invalid_request', 'unsupported client assertion')
  }
  let claimedId: unknown
  try {
    claimedId = form.get('client_id') ?? decodeJwt(assertion).sub
  } catch {
    throw invalidClient('malformed client assertion')
  }
  const client = typeof claimedId === 'string' ? input.clients.get(claimedId) : undefined
  if (!client || client.auth !== 'private_key_jwt') throw invalidClient('client authentication failed')
  let payload: Record<string, unknown>
  try {
    const jwks = createLocalJWKSet({ keys: client.keys.map((k) => k.jwk) })
    ;({ payload } = await jwtVerify(assertion, jwks, {
      algorithms: ASSERTION_ALGORITHMS,
      issuer: client.clientId,
      subject: client.clientId,
      audience: input.audiences,
      requiredClaims: ['exp', 'jti'],
    }))
  } catch {
    throw invalidClient('client assertion is invalid')
  }
  if (typeof payload['jti'] !== 'string' || !used.claim(client.clientId, payload['jti'], payload['exp'] as number)) {
    throw invalidClient('client assertion was used before')
  }
  return client
}

function authenticateCertificate(input: ClientAuthInput): ResolvedClient {
  const clientId = input.form.get('client_id')
  if (clientId === null) throw invalidClient('no client authentication')
  const client = input.clients.get(clientId)
  if (!client || client.auth !== 'tls_client_auth') throw invalidClient('client authentication failed')
  const certificate = input.certificate
  if (!certificate) throw invalidClient('no verified client certificate')
  if (certificate.isCa) throw invalidClient('a CA certificate is not a client certificate')
  if (!certificate.uris.includes(client.identity)) throw invalidClient('client certificate does not carry the registered SAN URI')
  return client
}

/**
 * The `jti`s of client assertions already used, per client, kept until their `exp`
 * (RFC 7523 §3 point 7: an assertion is used once).
 *
 * @internal
 */
export class AssertionLedger {
  readonly #used = new Map<string, number>()

  /** Records `jti`; `false` when it was used before. */
  claim(clientId: string, jti: string, exp: number): boolean {
    const now = Math.floor(Date.now() / 1000)
    for (const [key, until] of this.#used) if (until < now) this.#used.delete(key)
    const key = `${clientId}\n${jti}`
    if (this.#used.has(key)) return false
    this.#used.set(key, exp)
    return true
  }
}

function invalidClient(description: string): TokenError {
  return new TokenError(401, 'invalid_client', description)
}

/** RFC 6749 §2.3.1 / Appendix B: the id and secret were form-urlencoded before Basic encoding. */
function formDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '))
  } catch {
    return undefined
  }
}

/** Constant-time comparison of two secrets of any length (compares their digests). */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest()
  return timingSafeEqual(digest(given), digest(expected)) && expected.length > 0
}
