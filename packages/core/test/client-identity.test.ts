// The workload certificate of a calling service (createClientIdentity): loading and checking,
// rotation by file content with the 'first-read' rule, a broken pair kept out, and the check interval.
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClientIdentity, type ClientIdentityMaterial } from '../src/client-identity.js'

const API = 'spiffe://example.org/ns/orders/sa/api'
const WORKER = 'spiffe://example.org/ns/orders/sa/worker'
const HOUR_MS = 3_600_000

let ca: TestCa
let first: IssuedCertificate
let second: IssuedCertificate
let dir: string
let paths: { cert: string; key: string; ca: string }

beforeAll(async () => {
  ca = await createTestCa()
  ;[first, second] = await Promise.all([ca.issueCertificate({ spiffeId: API }), ca.issueCertificate({ spiffeId: WORKER })])
  dir = mkdtempSync(join(tmpdir(), 'callsign-client-identity-'))
  paths = { cert: join(dir, 'svid.pem'), key: join(dir, 'svid.key'), ca: join(dir, 'bundle.pem') }
  writeFileSync(paths.ca, ca.certPem)
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const write = (issued: Pick<IssuedCertificate, 'chainPem' | 'keyPem'>): void => {
  writeFileSync(paths.cert, issued.chainPem)
  writeFileSync(paths.key, issued.keyPem)
}
const fromFiles = (checkInterval: number) =>
  createClientIdentity({ cert: { path: paths.cert }, key: { path: paths.key }, ca: { path: paths.ca } }, { checkInterval })

describe('createClientIdentity', () => {
  it('loads the pair: PEM, leaf, x5t#S256, SPIFFE ID, generation 1; the same resolved promise on every call', async () => {
    const identity = createClientIdentity({ cert: first.chainPem, key: Buffer.from(first.keyPem), ca: ca.certPem })
    const material = await identity.current()
    expect(material).toMatchObject({ cert: first.chainPem, key: first.keyPem, ca: ca.certPem, thumbprint: first.x5tS256, spiffeId: API, generation: 1 })
    expect(material.certificate.fingerprint256).toBe(new X509Certificate(first.certPem).fingerprint256)
    expect(Object.isFrozen(material)).toBe(true)
    expect(identity.current()).toBe(identity.current())
  })

  it('has no CA bundle (Node roots) and no SPIFFE ID when none is given', async () => {
    const plain = await ca.issueCertificate({ commonName: 'no-san' })
    expect(await createClientIdentity({ cert: plain.certPem, key: plain.keyPem }).current()).toMatchObject({ ca: undefined, spiffeId: undefined })
  })

  it.each([
    ['not an object', 'x', 'Callsign: "identity" must be an object { cert, key, ca? } (PEM strings, Buffers or { path })'],
    ['an unknown member', { cert: 'a', key: 'b', crt: 'c' }, 'Callsign: "identity.crt" is not a known option (known: cert, key, ca)'],
    [
      "a key that is not the certificate's",
      () => ({ cert: first.certPem, key: second.keyPem }),
      'Callsign: "identity.key" is not the private key of identity.cert',
    ],
    ['a CA without a certificate', () => ({ cert: first.certPem, key: first.keyPem, ca: 'nope' }), 'Callsign: "identity.ca" holds no PEM certificate'],
  ])('throws a TypeError naming the option for %s', (_, value, message) => {
    const options = (typeof value === 'function' ? value() : value) as never
    expect(() => createClientIdentity(options)).toThrow(new TypeError(message))
  })

  it('names the option it is given, and refuses a bad checkInterval', () => {
    expect(() => createClientIdentity({ cert: 'x', key: first.keyPem }, { option: 'client.identity' })).toThrow(
      /^Callsign: "client\.identity\.cert" is not a PEM certificate/,
    )
    expect(() => createClientIdentity({ cert: { path: join(dir, 'absent.pem') }, key: first.keyPem })).toThrow(/^Callsign: "identity\.cert" could not be read/)
    for (const checkInterval of [-1, Number.NaN, '1000'])
      expect(() => createClientIdentity({ cert: first.certPem, key: first.keyPem }, { checkInterval: checkInterval as number })).toThrow(
        new TypeError('Callsign: "checkInterval" must be a number of milliseconds >= 0'),
      )
  })

  it('applies a rotated pair at the next check: new generation, new thumbprint and SPIFFE ID, onReload once', async () => {
    write(first)
    const identity = fromFiles(0)
    const reloaded: ClientIdentityMaterial[] = []
    identity.onReload = (material) => reloaded.push(material)
    expect((await identity.current()).generation).toBe(1)
    write(second)
    const rotated = await identity.current()
    expect(rotated).toMatchObject({ generation: 2, thumbprint: second.x5tS256, spiffeId: WORKER, cert: second.chainPem })
    expect(await identity.current()).toBe(rotated)
    expect(reloaded).toEqual([rotated])
  })

  it('keeps the previous pair when the new one does not load, reports it once, and takes the next good one', async () => {
    write(first)
    const identity = fromFiles(0)
    const failures: string[] = []
    identity.onReloadFailure = (reason) => failures.push(reason)
    const before = await identity.current()
    // The certificate rotated, the key not yet (or a half-written file).
    writeFileSync(paths.cert, second.chainPem)
    expect(await identity.current()).toBe(before)
    expect(await identity.current()).toBe(before)
    expect(failures).toEqual(['Callsign: "identity.key" is not the private key of identity.cert'])
    writeFileSync(paths.key, second.keyPem)
    expect(await identity.current()).toMatchObject({ generation: 2, thumbprint: second.x5tS256 })
    expect(failures).toHaveLength(1)
  })

  it('does not fail current() when a callback throws', async () => {
    write(first)
    const identity = fromFiles(0)
    const boom = (): never => {
      throw new Error('logger down')
    }
    identity.onReload = boom
    identity.onReloadFailure = boom
    writeFileSync(paths.cert, second.chainPem)
    expect((await identity.current()).generation).toBe(1)
    writeFileSync(paths.key, second.keyPem)
    expect((await identity.current()).generation).toBe(2)
  })

  it('reads the files at most once per checkInterval: within it, the same promise and no rotation', async () => {
    write(first)
    const identity = fromFiles(HOUR_MS)
    const pending = identity.current()
    write(second)
    expect(identity.current()).toBe(pending)
    expect(await identity.current()).toMatchObject({ generation: 1, thumbprint: first.x5tS256 })
  })
})
