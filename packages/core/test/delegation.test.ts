import { describe, expect, it } from 'vitest'
import type { AccessTokenClaims, VerifiedToken } from '../src/access-token.js'
import { checkCallerConsistency, checkDelegation, tokenWorkload } from '../src/delegation.js'
import { resolveConfig, type CallsignOptions } from '../src/options.js'
import type { PeerCertificate } from '../src/peer-certificate.js'
import { refusalOf as refusal } from './refusal.js'

const ISSUER = 'https://auth.example.com/'
const WEB = 'spiffe://example.org/ns/web/sa/frontend'
const GATEWAY = 'spiffe://example.org/ns/edge/sa/gateway'
const BATCH = 'spiffe://example.org/ns/batch/sa/worker'
const EVIL = 'spiffe://evil.example/ns/web/sa/frontend'
const USER = 'user:alice'

const configOf = (options: Partial<CallsignOptions> = {}) => resolveConfig({ issuers: { issuer: ISSUER, audience: 'orders' }, ...options })
const config = configOf({ clientIds: { 'web-client': WEB, 'batch-client': BATCH } })
const resolvedIssuer = config.issuers.get(ISSUER)!

const token = (claims: Partial<AccessTokenClaims> = {}, actors: string[] = []): VerifiedToken => ({
  claims: { iss: ISSUER, exp: 2_000_000_000, sub: USER, ...claims } as AccessTokenClaims,
  issuer: resolvedIssuer,
  scopes: [],
  actors,
})

const peerOf = (spiffeId: string | undefined): PeerCertificate => ({
  ...(spiffeId === undefined ? {} : { spiffeId }),
  uris: spiffeId === undefined ? [] : [spiffeId],
  dnsNames: [],
  subject: 'CN=peer',
  x5tS256: 'thumbprint',
  validTo: new Date(2_000_000_000_000),
})

describe('tokenWorkload', () => {
  it.each<[string, Partial<AccessTokenClaims>, string[], string | undefined]>([
    ['the nearest actor, before client_id', { client_id: BATCH }, [GATEWAY, WEB], GATEWAY],
    ['a client_id that is a SPIFFE ID', { client_id: WEB }, [], WEB],
    ['a client_id mapped through clientIds', { client_id: 'web-client' }, [], WEB],
    ['an actor mapped through clientIds', { client_id: WEB }, ['batch-client'], BATCH],
    ['nothing for an unmapped client_id that is no SPIFFE ID', { client_id: 'other-client' }, [], undefined],
    ['nothing for an unmapped actor that is no SPIFFE ID, even with a SPIFFE client_id', { client_id: WEB }, ['other-client'], undefined],
    ['nothing for a trust-domain-only SPIFFE ID', { client_id: 'spiffe://example.org' }, [], undefined],
    ['nothing without client_id and actors', {}, [], undefined],
    ['the subject of a service token (no act, no client_id), when it is a SPIFFE ID', { sub: WEB }, [], WEB],
    ['azp before sub', { sub: 'alice', azp: WEB }, [], WEB],
  ])('names %s', (_case, claims, actors, expected) => {
    expect(tokenWorkload(token(claims, actors), config)).toBe(expected)
  })
})

describe('checkCallerConsistency', () => {
  it.each<[string, Partial<AccessTokenClaims>, string[], PeerCertificate | undefined]>([
    ['the certificate names the client_id', { client_id: WEB }, [], peerOf(WEB)],
    ['the certificate names the mapped client_id', { client_id: 'web-client' }, [], peerOf(WEB)],
    ['the certificate names the nearest actor', { client_id: BATCH }, [WEB, GATEWAY], peerOf(WEB)],
    ['there is no certificate', { client_id: WEB }, [], undefined],
    ['the certificate has no SPIFFE ID', { client_id: WEB }, [], peerOf(undefined)],
    ['the token names no workload', { client_id: 'other-client' }, [], peerOf(BATCH)],
  ])('passes when %s', (_case, claims, actors, peer) => {
    expect(() => checkCallerConsistency(token(claims, actors), peer, config)).not.toThrow()
  })

  it.each<[string, Partial<AccessTokenClaims>, string[], string]>([
    ['another SPIFFE client_id', { client_id: WEB }, [], BATCH],
    ['a client_id mapped to another workload', { client_id: 'web-client' }, [], BATCH],
    ['the same path in another trust domain', { client_id: WEB }, [], EVIL],
    ['another nearest actor (the client_id matching does not help)', { client_id: BATCH }, [WEB], BATCH],
  ])('refuses a token naming %s than the certificate with invalid_token', (_case, claims, actors, peerId) => {
    const error = refusal(() => checkCallerConsistency(token(claims, actors), peerOf(peerId), config))
    expect({ code: error.code, message: error.message, status: error.status }).toEqual({
      code: 'invalid_token',
      message: 'token was issued to another service',
      status: 401,
    })
  })

  it("does not check with callerConsistency: 'off'", () => {
    const off = configOf({ callerConsistency: 'off' })
    expect(() => checkCallerConsistency(token({ client_id: WEB }), peerOf(BATCH), off)).not.toThrow()
  })
})

describe('checkDelegation', () => {
  const chain = (n: number): string[] => Array.from({ length: n }, (_, i) => `spiffe://example.org/ns/hop/sa/s${i}`)

  it.each<[string, Partial<CallsignOptions>, string[]]>([
    ['a token without actors', {}, []],
    ['a chain of the default maxDepth 4', {}, chain(4)],
    ['a chain of maxDepth', { delegation: { maxDepth: 2 } }, chain(2)],
    ['a chain of 8 with maxDepth 8', { delegation: { maxDepth: 8 } }, chain(8)],
    ['actors all matching delegation.actors', { delegation: { actors: ['spiffe://example.org/ns/edge/*', WEB] } }, [WEB, GATEWAY]],
    ['a token without actors under delegation.actors', { delegation: { actors: [WEB] } }, []],
    ['a chain matching hops in order', { delegation: { hops: [[WEB], [GATEWAY]] } }, [WEB, GATEWAY]],
    ['a chain shorter than hops', { delegation: { hops: [[WEB], [GATEWAY]] } }, [WEB]],
    ['a token without actors under hops', { delegation: { hops: [[WEB]] } }, []],
    ['a hop matching one of its patterns', { delegation: { hops: [[BATCH, 'spiffe://example.org/ns/web/*']] } }, [WEB]],
  ])('accepts %s', (_case, options, actors) => {
    expect(() => checkDelegation(token({}, actors), undefined, configOf(options))).not.toThrow()
  })

  it.each<[string, Partial<CallsignOptions>, string[], string, string]>([
    ['a chain one deeper than the default maxDepth', {}, chain(5), 'invalid_token', 'delegation chain too deep'],
    ['a chain one deeper than maxDepth 1', { delegation: { maxDepth: 1 } }, chain(2), 'invalid_token', 'delegation chain too deep'],
    [
      'a too deep chain of disallowed actors (depth is checked first)',
      { delegation: { maxDepth: 1, actors: [WEB] } },
      [BATCH, BATCH],
      'invalid_token',
      'delegation chain too deep',
    ],
    [
      'an actor outside delegation.actors',
      { delegation: { actors: [WEB, GATEWAY] } },
      [WEB, BATCH],
      'caller_forbidden',
      'the delegation chain includes an actor that is not allowed',
    ],
    [
      'an actor in another trust domain than the prefix',
      { delegation: { actors: ['spiffe://example.org/*'] } },
      [EVIL],
      'caller_forbidden',
      'the delegation chain includes an actor that is not allowed',
    ],
    [
      'a chain longer than hops',
      { delegation: { hops: [[WEB], [GATEWAY]] } },
      [WEB, GATEWAY, BATCH],
      'caller_forbidden',
      'the delegation chain is longer than allowed',
    ],
    [
      'a chain in the reverse order of hops',
      { delegation: { hops: [[WEB], [GATEWAY]] } },
      [GATEWAY, WEB],
      'caller_forbidden',
      'the delegation chain includes an actor that is not allowed',
    ],
    [
      'a far hop outside its patterns',
      { delegation: { hops: [[WEB], [GATEWAY]] } },
      [WEB, BATCH],
      'caller_forbidden',
      'the delegation chain includes an actor that is not allowed',
    ],
  ])('refuses %s', (_case, options, actors, code, message) => {
    const error = refusal(() => checkDelegation(token({}, actors), undefined, configOf(options)))
    expect({ code: error.code, message: error.message }).toEqual({ code, message })
    if (code === 'caller_forbidden') expect([error.status, error.side]).toEqual([403, 'caller'])
    else expect(error.status).toBe(401)
  })

  describe('may_act (RFC 8693 §4.4)', () => {
    it.each<[string, Partial<AccessTokenClaims>, string[], PeerCertificate | undefined]>([
      ['the nearest actor is the one may_act names', { may_act: { sub: WEB } }, [WEB, GATEWAY], undefined],
      ['the token has no acting party (client_id is the subject)', { may_act: { sub: WEB }, client_id: USER }, [], undefined],
      ['the token has neither actors nor client_id', { may_act: { sub: WEB } }, [], undefined],
      ['client_id differs from sub and is the one may_act names', { may_act: { sub: WEB }, client_id: WEB }, [], undefined],
      ['the certificate names the one may_act names, whatever client_id says', { may_act: { sub: WEB }, client_id: 'web-client' }, [], peerOf(WEB)],
      ['a certificate without SPIFFE ID falls back to client_id', { may_act: { sub: WEB }, client_id: WEB }, [], peerOf(undefined)],
      ['the nearest actor wins over the certificate', { may_act: { sub: WEB }, client_id: BATCH }, [WEB], peerOf(BATCH)],
    ])('accepts when %s', (_case, claims, actors, peer) => {
      expect(() => checkDelegation(token(claims, actors), peer, config)).not.toThrow()
    })

    it.each<[string, Partial<AccessTokenClaims>, string[], PeerCertificate | undefined]>([
      ['the nearest actor is another one', { may_act: { sub: WEB } }, [GATEWAY], undefined],
      ['only a farther actor is the one named', { may_act: { sub: WEB } }, [GATEWAY, WEB], undefined],
      ['client_id differs from sub and from may_act.sub', { may_act: { sub: WEB }, client_id: BATCH }, [], undefined],
      ['the certificate names another workload than may_act, though client_id matches', { may_act: { sub: WEB }, client_id: WEB }, [], peerOf(BATCH)],
    ])('refuses with caller_forbidden when %s', (_case, claims, actors, peer) => {
      const error = refusal(() => checkDelegation(token(claims, actors), peer, config))
      expect({ code: error.code, message: error.message, side: error.side, status: error.status }).toEqual({
        code: 'caller_forbidden',
        message: 'the subject does not allow this actor (may_act)',
        side: 'caller',
        status: 403,
      })
    })

    it.each<[string, unknown]>([
      ['a string', WEB],
      ['null', null],
      ['an array', [{ sub: WEB }]],
      ['an object without sub', { iss: ISSUER }],
      ['a numeric sub', { sub: 1 }],
    ])('refuses a may_act that is %s with invalid_token', (_case, mayAct) => {
      const error = refusal(() => checkDelegation(token({ may_act: mayAct as NonNullable<AccessTokenClaims['may_act']> }, [WEB]), undefined, config))
      expect({ code: error.code, message: error.message }).toEqual({ code: 'invalid_token', message: 'malformed may_act claim' })
    })
  })
})
