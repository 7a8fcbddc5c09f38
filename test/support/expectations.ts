/**
 * Assertions shared by every conformance scenario: the refusal contract (status, RFC 6750
 * `WWW-Authenticate` challenge, RFC 9457 problem body) and the auth context of an accepted call.
 */
import { expect } from 'vitest'
import type { AuthErrorCode } from '@callsign/core'
import type { CallResult, ClientIdentity } from './client.js'

/** A parsed `WWW-Authenticate` challenge. */
export interface Challenge {
  scheme: string
  params: Record<string, string>
}

/**
 * Parse a `WWW-Authenticate` value into its challenges (RFC 9110 §11.6.1):
 * `Scheme k="v", k2="v2", Scheme2 k="v"` (quoted values without escapes, as Callsign writes them).
 */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = []
  const item = /\s*(?:([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +)?([A-Za-z_][A-Za-z0-9_-]*)="([^"\\]*)"\s*(?:,|$)|\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(?:,|$)/y
  let consumed = 0
  for (let m = item.exec(header); m && m[0].length > 0; m = item.exec(header)) {
    if (m[4] !== undefined) {
      challenges.push({ scheme: m[4], params: {} })
    } else {
      if (m[1] !== undefined) challenges.push({ scheme: m[1], params: {} })
      const current = challenges.at(-1)
      if (!current) throw new Error(`challenge parameter before any scheme in ${JSON.stringify(header)}`)
      expect(current.params, `duplicate challenge parameter ${m[2]}`).not.toHaveProperty(m[2]!)
      current.params[m[2]!] = m[3]!
    }
    consumed = item.lastIndex
    if (consumed >= header.length) break
  }
  expect(consumed, `unparsable challenges in ${JSON.stringify(header)}`).toBe(header.length)
  return challenges
}

/** Parse a header holding exactly one challenge. */
export function parseChallenge(header: string): Challenge {
  const challenges = parseChallenges(header)
  expect(challenges).toHaveLength(1)
  return challenges[0]!
}

/** The DPoP challenge's `algs` with default options. */
export const DEFAULT_DPOP_ALGS = 'ES256 ES384 ES512 EdDSA Ed25519 RS256 RS384 RS512 PS256 PS384 PS512'

export interface RefusalExpectation {
  status: 400 | 401 | 403 | 503
  code: AuthErrorCode
  /** Which identity a 403 is about. */
  side?: 'caller' | 'user'
  /** The space-separated `scope` a 403 echoes (challenge and body). */
  scope?: string
  /** Default `'api'`. */
  realm?: string
  /** Which challenge carries the error: `Bearer` (default) or `DPoP` (proof errors, DPoP requests). */
  errorScheme?: 'Bearer' | 'DPoP'
  /** `algs` of the DPoP challenge; `null` when DPoP is off. Default {@link DEFAULT_DPOP_ALGS}. */
  dpopAlgs?: string | null
  /** False when the guard accepts only DPoP (no Bearer challenge). Default true. */
  bearer?: boolean
}

/**
 * The RFC 6750 §3.1 `error` each Bearer refusal must carry in its challenge; `null`: a bare
 * challenge (no credentials to judge, or a TLS-level refusal). Codes outside this suite's scope
 * (e.g. DPoP ones, which use another scheme) are deliberately absent.
 */
const CHALLENGE_ERROR: Partial<Record<AuthErrorCode, string | null>> = {
  credentials_missing: null,
  mtls_required: null,
  peer_unauthorized: null,
  invalid_request: 'invalid_request',
  invalid_token: 'invalid_token',
  insufficient_scope: 'insufficient_scope',
  caller_forbidden: 'insufficient_scope',
  caller_scope_exceeded: 'insufficient_scope',
  on_behalf_of_required: 'insufficient_scope',
  on_behalf_of_forbidden: 'insufficient_scope',
  invalid_dpop_proof: 'invalid_dpop_proof',
  use_dpop_nonce: 'use_dpop_nonce',
}

/** Assert the full refusal contract. */
export function expectRefusal(res: CallResult, expected: RefusalExpectation): void {
  const context = `${expected.status} ${expected.code}; got ${res.status} ${res.text.slice(0, 300)}`
  expect(res.status, context).toBe(expected.status)
  expect(res.headers['content-type'], context).toMatch(/^application\/problem\+json\s*(;|$)/)
  expect(res.headers['cache-control'], context).toBe('no-store')

  const problem = res.body as Record<string, unknown>
  expect(problem, context).toMatchObject({
    type: `urn:callsign:problem:${expected.code}`,
    code: expected.code,
    status: expected.status,
    title: expect.any(String),
    detail: expect.any(String),
  })
  if (expected.status === 403) expect(problem.side, context).toBe(expected.side)
  else expect(problem, context).not.toHaveProperty('side')
  if (expected.scope !== undefined) expect(problem.scope, context).toBe(expected.scope)
  else expect(problem, context).not.toHaveProperty('scope')

  if (expected.status === 503) {
    const retryAfter = res.headers['retry-after']
    expect(retryAfter, context).toMatch(/^[1-9][0-9]*$/)
    return
  }
  const header = res.headers['www-authenticate']
  expect(typeof header, `${context}: WWW-Authenticate`).toBe('string')
  const challenges = parseChallenges(header as string)
  const realm = expected.realm ?? 'api'
  const dpopAlgs = expected.dpopAlgs === undefined ? DEFAULT_DPOP_ALGS : expected.dpopAlgs
  const schemes = [...(expected.bearer === false ? [] : ['Bearer']), ...(dpopAlgs === null ? [] : ['DPoP'])]
  expect(
    challenges.map((c) => c.scheme),
    `${context}: challenge schemes`,
  ).toEqual(schemes)
  for (const challenge of challenges) {
    expect(challenge.params.realm).toBe(realm)
    if (challenge.scheme === 'DPoP') expect(challenge.params.algs).toBe(dpopAlgs)
  }
  const error = CHALLENGE_ERROR[expected.code]
  if (error === undefined) throw new Error(`no challenge expectation for code ${expected.code}`)
  const errorScheme = expected.errorScheme ?? (expected.bearer === false ? 'DPoP' : 'Bearer')
  for (const challenge of challenges) {
    const carries = error !== null && challenge.scheme === errorScheme
    if (!carries) {
      // A bare challenge: realm (and algs) only (RFC 6750 §3.1: no error code without credentials).
      expect(Object.keys(challenge.params).sort(), `${context}: bare ${challenge.scheme} challenge`).toEqual(
        challenge.scheme === 'DPoP' ? ['algs', 'realm'] : ['realm'],
      )
      continue
    }
    expect(challenge.params.error).toBe(error)
    expect(challenge.params.error_description).toEqual(expect.any(String))
    if (expected.scope !== undefined) expect(challenge.params.scope).toBe(expected.scope)
    else expect(challenge.params).not.toHaveProperty('scope')
  }
  if (error !== null)
    expect(
      challenges.some((c) => c.scheme === errorScheme),
      `${context}: ${errorScheme} challenge`,
    ).toBe(true)
}

export interface AcceptExpectation {
  caller: { id: string; source: 'mtls' | 'forwarded' | 'token' }
  /** `sub` of the user the call is made for; absent: a service-only call. */
  user?: string
  /** Default `[]`. */
  scopes?: string[]
  /** Nearest first. Default `[]`. */
  actors?: string[]
  /** Default `'bearer'`. */
  binding?: 'bearer' | 'mtls' | 'dpop'
  /**
   * The client certificate the context must describe; absent: no `peer`. `verification`, when
   * given, is checked too (`'tls'`, `'forwarded-certificate'`, `'proxy-assertion'`).
   */
  peer?: ClientIdentity & { x5tS256: string; spiffeId?: string; verification?: 'tls' | 'forwarded-certificate' | 'proxy-assertion' }
  /** The `iss` of the token, when checked. */
  issuer?: string
  /** Default `'token'`; `'certificate'`: no token, no issuer, no claims. */
  credential?: 'token' | 'certificate'
}

/** Assert a 200 whose body is the auth context described. */
export function expectAccepted(res: CallResult, expected: AcceptExpectation): void {
  expect(res.status, `expected 200, got ${res.status} ${res.text.slice(0, 300)}`).toBe(200)
  expect(res.headers['content-type']).toMatch(/^application\/json\s*(;|$)/)
  const auth = res.body as Record<string, unknown>
  expect(auth.caller).toEqual(expected.caller)
  if (expected.user === undefined) expect(auth).not.toHaveProperty('user')
  else expect(auth.user).toEqual({ sub: expected.user })
  expect(auth.scopes).toEqual(expected.scopes ?? [])
  expect(auth.actors).toEqual(expected.actors ?? [])
  expect(auth.binding).toBe(expected.binding ?? 'bearer')
  if (expected.peer === undefined) {
    expect(auth).not.toHaveProperty('peer')
  } else {
    const peer = auth.peer as Record<string, unknown>
    expect(peer.x5tS256).toBe(expected.peer.x5tS256)
    if (expected.peer.spiffeId === undefined) expect(peer).not.toHaveProperty('spiffeId')
    else expect(peer.spiffeId).toBe(expected.peer.spiffeId)
    if (expected.peer.verification !== undefined) expect(peer.verification).toBe(expected.peer.verification)
  }
  if (expected.issuer !== undefined) expect(auth.issuer).toBe(expected.issuer)
  expect(auth.credential).toBe(expected.credential ?? 'token')
  if (auth.credential === 'certificate') {
    expect(auth).not.toHaveProperty('issuer')
    expect(auth).not.toHaveProperty('claims')
  }
}

/** What a scenario expects: an accepted call, a refusal, or a 200 from a route without `requireAuth`. */
export type Outcome = { accept: AcceptExpectation } | { refuse: RefusalExpectation } | { served: unknown }

export function expectOutcome(res: CallResult, outcome: Outcome): void {
  if ('accept' in outcome) expectAccepted(res, outcome.accept)
  else if ('refuse' in outcome) expectRefusal(res, outcome.refuse)
  else {
    expect(res.status, `expected 200, got ${res.status} ${res.text.slice(0, 300)}`).toBe(200)
    expect(res.body).toMatchObject(outcome.served as object)
  }
}

// Shorthands for scenario tables.
export const accept = (expected: AcceptExpectation): Outcome => ({ accept: expected })
export const refuse = (expected: RefusalExpectation): Outcome => ({ refuse: expected })
/** A 200 from a route without `requireAuth` whose JSON body matches `body`. */
export const served = (body: object): Outcome => ({ served: body })
export const missingCredentials = (realm = 'api'): Outcome => refuse({ status: 401, code: 'credentials_missing', realm })
export const invalidRequest = (): Outcome => refuse({ status: 400, code: 'invalid_request' })
export const invalidToken = (realm = 'api'): Outcome => refuse({ status: 401, code: 'invalid_token', realm })
export const mtlsRequired = (): Outcome => refuse({ status: 401, code: 'mtls_required' })
export const peerUnauthorized = (): Outcome => refuse({ status: 401, code: 'peer_unauthorized' })
export const forbidden = (code: AuthErrorCode, side: 'caller' | 'user', scope?: string): Outcome =>
  refuse({ status: 403, code, side, ...(scope === undefined ? {} : { scope }) })
