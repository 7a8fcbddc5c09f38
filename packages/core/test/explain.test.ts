import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { createTestCa, startTestIssuer, type IssuedCertificate, type TestCa, type TestIssuer } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { explain } from '../src/explain.js'
import type { AuthRule } from '../src/policy.js'

const CLI = join(import.meta.dirname, '..', 'dist', 'cli.js')
const WEB = 'spiffe://example.org/ns/web/sa/frontend'

let issuer: TestIssuer
let ca: TestCa
let cert: IssuedCertificate
let dir: string
const options = () => ({ issuers: { issuer: issuer.issuer, audience: 'orders' }, callers: { 'spiffe://example.org/ns/web/*': ['orders:read'] } })

beforeAll(async () => {
  ;[issuer, ca] = await Promise.all([startTestIssuer(), createTestCa()])
  cert = await ca.issueCertificate({ spiffeId: WEB })
  dir = await mkdtemp(join(tmpdir(), 'callsign-explain-'))
  await Promise.all([
    writeFile(join(dir, 'options.json'), JSON.stringify(options())),
    writeFile(join(dir, 'cert.pem'), cert.certPem),
    writeFile(join(dir, 'ca.pem'), ca.certPem),
  ])
})
afterAll(async () => {
  await issuer?.close()
  await rm(dir, { recursive: true, force: true })
})

const cli = (args: string[]) =>
  promisify(execFile)(process.execPath, [CLI, ...args], { encoding: 'utf8' }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  )

describe('explain()', () => {
  it('lists every check and allows a good call, with caller, user and delegation', async () => {
    const token = await issuer.signAccessToken({ sub: 'alice', act: { sub: WEB }, scope: 'orders:read' }, { audience: 'orders' })
    const result = await explain({ options: options(), token, certificatePem: cert.certPem, caPem: ca.certPem, rule: { scopes: ['orders:read'] } })
    expect(result.allowed).toBe(true)
    expect(result.steps.map((s) => [s.check, s.ok])).toEqual([
      ['client certificate', true],
      ['credentials', true],
      ['header', true],
      ['issuer', true],
      ['audience', true],
      ['time', true],
      ['signature', true],
      ['binding', true],
      ['caller', true],
      ['user', true],
      ['delegation', true],
      ['rule', true],
    ])
    expect(result.steps.find((s) => s.check === 'caller')?.detail).toBe(`${WEB} (source: mtls)`)
  })

  it.each<[string, { expiresInSeconds?: number; audience?: string }, AuthRule, string, string]>([
    ['an expired token', { expiresInSeconds: -600 }, {}, 'time', 'invalid_token'],
    ['another audience', { audience: 'billing' }, {}, 'audience', 'invalid_token'],
    ['a scope beyond the caller allowance', {}, { scopes: ['orders:write'] }, 'rule', 'caller_scope_exceeded'],
  ])('marks the failing check for %s', async (_case, signOptions, rule, check, code) => {
    const token = await issuer.signAccessToken({ sub: 'alice', act: { sub: WEB }, scope: 'orders:read orders:write' }, { audience: 'orders', ...signOptions })
    const result = await explain({ options: options(), token, certificatePem: cert.certPem, rule })
    expect(result.allowed).toBe(false)
    expect(result.code).toBe(code)
    expect(result.steps.find((s) => s.ok === false)?.check).toBe(check)
  })

  it('explains an mTLS-only call (certificateGrants) and one without a granted certificate', async () => {
    const granted = await explain({
      options: { ...options(), certificateGrants: { [WEB]: ['orders:read'] } },
      certificatePem: cert.certPem,
      caPem: ca.certPem,
      rule: { scopes: ['orders:read'] },
    })
    expect(granted.allowed).toBe(true)
    expect(granted.auth?.credential).toBe('certificate')
    expect(granted.steps.find((s) => s.check === 'credentials')).toEqual({
      check: 'credentials',
      ok: true,
      detail: 'no access token: authenticated by the client certificate alone (certificateGrants: orders:read)',
    })
    const refused = await explain({
      options: { ...options(), certificateGrants: { 'spiffe://example.org/ns/other/*': ['orders:read'] } },
      certificatePem: cert.certPem,
      caPem: ca.certPem,
    })
    expect([refused.allowed, refused.code]).toEqual([false, 'credentials_missing'])
  })

  it('never prints the token signature', async () => {
    const token = await issuer.signAccessToken({ sub: 'svc', client_id: 'svc' }, { audience: 'orders' })
    const result = await explain({ options: options(), token })
    expect(JSON.stringify(result.steps)).not.toContain(token.split('.')[2]!)
  })
})

describe('callsign explain (CLI)', () => {
  it('exits 0 for an allowed call and prints PASS lines', async () => {
    const token = await issuer.signAccessToken({ sub: 'alice', act: { sub: WEB }, scope: 'orders:read' }, { audience: 'orders' })
    const out = await cli([
      'explain',
      '--options',
      join(dir, 'options.json'),
      '--token',
      token,
      '--cert',
      join(dir, 'cert.pem'),
      '--ca',
      join(dir, 'ca.pem'),
      '--rule',
      '{"scopes":["orders:read"]}',
    ])
    expect(out.code).toBe(0)
    expect(out.stdout).toMatch(/PASS {2}caller +spiffe:\/\/example.org\/ns\/web\/sa\/frontend/)
    expect(out.stdout).toContain('ALLOWED')
    expect(out.stdout).not.toContain(token.split('.')[2]!)
  })

  it('exits 1 for a refused call and names the reason', async () => {
    const token = await issuer.signAccessToken({ sub: 'svc', client_id: 'svc' }, { audience: 'orders', expiresInSeconds: -600 })
    const out = await cli(['explain', '--options', join(dir, 'options.json'), '--token', token, '--json'])
    expect(out.code).toBe(1)
    expect(JSON.parse(out.stdout)).toMatchObject({ allowed: false, status: 401, code: 'invalid_token', reason: 'token expired' })
  })

  it.each([
    ['no command', []],
    ['an unknown flag', ['explain', '--nope']],
    ['no options file', ['explain', '--token', 'x']],
    ['invalid options', ['explain', '--options', '/nonexistent.json']],
  ])('exits 2 for %s', async (_case, args) => {
    const out = await cli(args)
    expect(out.code).toBe(2)
  })
})
