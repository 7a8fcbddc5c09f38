// The one PEM scanner (RFC 7468) behind server TLS material, forwarded certificates and trust
// bundles: linear time, and the same blocks the earlier per-module scanners found.
import { createTestCa, type TestCa } from '@callsign/testing'
import { beforeAll, describe, expect, it } from 'vitest'
import { countPemBegins, pemCertificateBlocks, pemDer, scanPem } from '../src/internal/pem.js'

let ca: TestCa
let key: string
beforeAll(async () => {
  ca = await createTestCa()
  key = (await ca.issueServerCertificate()).keyPem
})

/** What server TLS used to find with a regex: every block, its label and end label. */
const regexBlocks = (text: string) =>
  [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g)].map(([whole, label, body, endLabel]) => ({
    label,
    endLabel,
    body,
    text: whole,
  }))

/** What forwarded certificates used to find with indexOf. */
function indexOfCertificates(text: string): string[] {
  const blocks: string[] = []
  for (let from = 0; ;) {
    const begin = text.indexOf('-----BEGIN CERTIFICATE-----', from)
    const end = begin === -1 ? -1 : text.indexOf('-----END CERTIFICATE-----', begin + 27)
    if (end === -1) return blocks
    blocks.push(text.slice(begin, end + 25))
    from = end + 25
  }
}

describe('scanPem', () => {
  const cases: Array<[string, () => string]> = [
    ['a certificate and a key', () => ca.certPem + key],
    ['text around and between blocks', () => `subject=CN=x\n${ca.certPem}junk\n${key}trailing`],
    ['a block closed by another label', () => '-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n'],
    ['a BEGIN with no END', () => ca.certPem + ca.certPem.slice(0, 120)],
    ['a BEGIN with a lower-case label, then a block', () => `-----BEGIN cert-----\nAAAA\n${ca.certPem}`],
    ['a BEGIN inside a block', () => `-----BEGIN CERTIFICATE-----\n${ca.certPem}`],
    ['an END with a lower-case label before the real one', () => '-----BEGIN X-----\nAA\n-----END x-----\nAA==\n-----END X-----'],
    ['six dashes', () => '------BEGIN A------\nAAAA\n------END A------'],
    ['no dashes after the label', () => '-----BEGIN CERTIFICATE\nAAAA\n-----END CERTIFICATE-----'],
    ['empty', () => ''],
  ]
  it.each(cases)('finds the blocks the regex found: %s', (_case, text) => {
    expect(scanPem(text())).toEqual(regexBlocks(text()))
  })
  it.each(cases)('finds the certificate blocks indexOf found: %s', (_case, text) => {
    expect(pemCertificateBlocks(text())).toEqual(indexOfCertificates(text()))
  })

  it('counts BEGIN lines as split did, so a block without its END line is seen', () => {
    const truncated = ca.certPem + ca.certPem.slice(0, 120)
    expect([countPemBegins(truncated), scanPem(truncated).length]).toEqual([2, 1])
    expect(countPemBegins(truncated, 'CERTIFICATE')).toBe(truncated.split('-----BEGIN CERTIFICATE-----').length - 1)
    const mixed = `${ca.certPem}${key}-----BEGIN cert-----`
    expect(countPemBegins(mixed)).toBe(mixed.split('-----BEGIN ').length - 1)
    expect(countPemBegins(mixed, 'CERTIFICATE')).toBe(1)
  })

  it('scans adversarial input in one pass: many BEGIN lines and no END', () => {
    const text = '-----BEGIN CERTIFICATE-----\n'.repeat(50_000)
    expect(scanPem(text)).toEqual([])
    expect(pemCertificateBlocks(text)).toEqual([])
    expect(countPemBegins(text)).toBe(50_000)
  })
})

describe('pemDer', () => {
  const block = (body: string) => ({ label: 'X', endLabel: 'X', body, text: '' })
  it('decodes the base64 body, skipping line breaks and header lines', () => {
    expect(pemDer(block('\nAQID\nBA==\n'))).toEqual(Buffer.from([1, 2, 3, 4]))
    expect(pemDer(block('\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAQID\n'))).toEqual(Buffer.from([1, 2, 3]))
  })
  it.each([
    ['empty', '\n\n'],
    ['not base64', '\nAQ!D\n'],
    ['cut off', '\nAQIDB\n'],
    ['padding inside', '\nAQ==AQID\n'],
  ])('refuses a body that is %s', (_case, body) => {
    expect(pemDer(block(body))).toBeUndefined()
  })
})
