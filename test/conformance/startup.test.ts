/**
 * Startup validation: a bad option throws a `TypeError` naming it when the middleware is created
 * (Fastify: when the plugin is registered), a bad rule throws when `requireAuth(rule)` is called
 * (at route definition), never at the first request.
 */
import { describe, expect, it } from 'vitest'
import type { AuthRule, CallsignOptions } from '@callsign/core'
import { adapters } from '../support/adapters.js'

const ISSUER = { issuer: 'https://auth.example.com', audience: 'https://orders.example.org' }

/** Options that are wrong on purpose: typed loosely, as a JavaScript user could write them. */
const BAD_OPTIONS: Array<{ title: string; options: unknown; names: RegExp }> = [
  { title: "algorithms: ['HS256'] (symmetric)", options: { issuers: ISSUER, algorithms: ['HS256'] }, names: /"algorithms"/ },
  { title: "algorithms: ['none']", options: { issuers: ISSUER, algorithms: ['none'] }, names: /"algorithms"/ },
  { title: 'algorithms: [] (empty)', options: { issuers: ISSUER, algorithms: [] }, names: /"algorithms"/ },
  { title: 'issuers: [] (empty)', options: { issuers: [] }, names: /"issuers"/ },
  { title: 'no issuers at all', options: {}, names: /"issuers"/ },
  { title: 'an http:// issuer that is not loopback', options: { issuers: { ...ISSUER, issuer: 'http://auth.example.com' } }, names: /"issuers\.issuer"/ },
  {
    title: 'an http:// jwksUri that is not loopback',
    options: { issuers: [{ ...ISSUER, jwksUri: 'http://auth.example.com/jwks' }] },
    names: /"issuers\[0\]\.jwksUri"/,
  },
  { title: 'an issuer with an empty audience list', options: { issuers: { ...ISSUER, audience: [] } }, names: /"issuers\.audience"/ },
  { title: 'the same issuer twice', options: { issuers: [ISSUER, ISSUER] }, names: /"issuers\[1\]\.issuer"/ },
  {
    title: 'a per-issuer algorithm the guard does not allow',
    options: { issuers: { ...ISSUER, algorithms: ['RS256'] }, algorithms: ['ES256'] },
    names: /"issuers\.algorithms"/,
  },
  { title: "mtls: 'sometimes'", options: { issuers: ISSUER, mtls: 'sometimes' }, names: /"mtls"/ },
  {
    title: 'mtls.trustDomains with an upper-case trust domain',
    options: { issuers: ISSUER, mtls: { trustDomains: ['Example.org'] } },
    names: /"mtls\.trustDomains"/,
  },
  { title: "typ: 'JWT' (not a typ mode)", options: { issuers: ISSUER, typ: 'JWT' }, names: /"typ"/ },
  { title: "credentials: 'maybe'", options: { issuers: ISSUER, credentials: 'maybe' }, names: /"credentials"/ },
  { title: 'clockTolerance above 300 s', options: { issuers: ISSUER, clockTolerance: 3600 }, names: /"clockTolerance"/ },
  { title: 'a negative jwks.cooldownSeconds', options: { issuers: ISSUER, jwks: { cooldownSeconds: -1 } }, names: /"jwks\.cooldownSeconds"/ },
  { title: 'a realm with a quote', options: { issuers: ISSUER, realm: 'a"b' }, names: /"realm"/ },
  { title: 'an unknown option (typo: issuer)', options: { issuers: ISSUER, issuer: 'https://auth.example.com' }, names: /"options\.issuer"/ },
  {
    title: 'a callers pattern with a wildcard inside a SPIFFE ID',
    options: { issuers: ISSUER, callers: { 'spiffe://example.org/ns/*/sa/x': ['orders:read'] } },
    names: /callers\["spiffe:\/\/example\.org\/ns\/\*\/sa\/x"\]/,
  },
  {
    title: 'a callers pattern with a wildcard in a client id',
    options: { issuers: ISSUER, callers: { 'svc-*': ['orders:read'] } },
    names: /callers\["svc-\*"\]/,
  },
  {
    title: 'a callers allowance with an invalid scope',
    options: { issuers: ISSUER, callers: { 'svc-a': ['orders read'] } },
    names: /callers\["svc-a"\]/,
  },
]

const BAD_RULES: Array<{ title: string; rule: unknown; names: RegExp }> = [
  { title: 'scopes as a string', rule: { scopes: 'orders:read' }, names: /rule\.scopes/ },
  { title: 'a scope with a space', rule: { scopes: ['orders read'] }, names: /rule\.scopes/ },
  { title: 'an unknown field (typo: scope)', rule: { scope: ['orders:read'] }, names: /rule\.scope\b/ },
  { title: 'empty anyScopes', rule: { anyScopes: [] }, names: /rule\.anyScopes/ },
  { title: 'empty callers', rule: { callers: [] }, names: /rule\.callers/ },
  { title: 'a caller prefix without the "/*" segment boundary', rule: { callers: ['spiffe://example.org/ns/batch*'] }, names: /rule\.callers\[0\]/ },
  { title: 'a malformed SPIFFE caller', rule: { callers: ['spiffe://Example.org//x'] }, names: /rule\.callers\[0\]/ },
  { title: "onBehalfOf: 'sometimes'", rule: { onBehalfOf: 'sometimes' }, names: /rule\.onBehalfOf/ },
]

describe.each(adapters)('$name: startup validation', (adapter) => {
  for (const { title, options, names } of BAD_OPTIONS)
    it(`refuses ${title} when the middleware is created`, async () => {
      const error: unknown = await adapter.create(options as CallsignOptions).then(
        () => undefined,
        (reason: unknown) => reason,
      )
      expect(error, 'creating the middleware must fail').toBeInstanceOf(TypeError)
      expect((error as TypeError).message).toMatch(names)
    })

  it('accepts valid options; creating the middleware needs no reachable issuer', async () => {
    await expect(
      adapter.create({
        issuers: [ISSUER, { issuer: 'http://127.0.0.1:1/unreachable', audience: 'x', jwksUri: 'http://127.0.0.1:1/jwks' }],
        mtls: { mode: 'required', trustDomains: ['example.org'] },
        callers: { 'spiffe://example.org/ns/web/*': ['orders:read'], 'svc-a': [] },
        algorithms: ['ES256', 'EdDSA'],
      }),
    ).resolves.toBeUndefined()
  })

  for (const { title, rule, names } of BAD_RULES)
    it(`requireAuth refuses ${title} at route definition`, () => {
      expect(() => adapter.requireAuth(rule as AuthRule)).toThrow(TypeError)
      expect(() => adapter.requireAuth(rule as AuthRule)).toThrow(names)
    })

  it('requireAuth accepts valid rules', () => {
    for (const rule of [
      {},
      { scopes: ['orders:read'], anyScopes: ['a'], callers: ['spiffe://example.org/ns/batch/*', 'svc-a'], onBehalfOf: 'required' as const },
    ]) {
      expect(() => adapter.requireAuth(rule)).not.toThrow()
    }
  })
})
