import { describe, expect, it } from 'vitest'
import { DpopNonces } from '../src/dpop-nonce.js'

const WINDOW_S = 300
const WINDOW = WINDOW_S * 1000
const SECRET = Buffer.alloc(32, 1)
// The start of a window, so window arithmetic below is exact.
const START = Math.floor(1_900_000_000_000 / WINDOW) * WINDOW

function setup(secret = SECRET) {
  const clock = { now: START }
  const nonces = new DpopNonces(secret, WINDOW_S, () => clock.now)
  return { clock, nonces }
}

/** The slice and mac of a nonce. */
const split = (nonce: string): [string, string] => {
  const dot = nonce.indexOf('.')
  return [nonce.slice(0, dot), nonce.slice(dot + 1)]
}

describe('DpopNonces.current', () => {
  it('is <base36 window>.<22-character base64url mac>', () => {
    const { nonces } = setup()
    const nonce = nonces.current()
    expect(nonce).toMatch(/^[0-9a-z]+\.[A-Za-z0-9_-]{22}$/)
    expect(split(nonce)[0]).toBe((START / WINDOW).toString(36))
    // It has a letter, so the upper-case case below really changes it.
    expect(split(nonce)[0]).toMatch(/[a-z]/)
  })

  it('is the same throughout a window and on every replica sharing the secret', () => {
    const { clock, nonces } = setup()
    const first = nonces.current()
    clock.now = START + WINDOW - 1
    expect(nonces.current()).toBe(first)
    expect(new DpopNonces(Buffer.from(SECRET), WINDOW_S, () => START).current()).toBe(first)
  })

  it('changes with the next window', () => {
    const { clock, nonces } = setup()
    const first = nonces.current()
    clock.now = START + WINDOW
    expect(nonces.current()).not.toBe(first)
  })

  it('differs under another secret', () => {
    expect(setup(Buffer.alloc(32, 2)).nonces.current()).not.toBe(setup().nonces.current())
  })
})

describe('DpopNonces.isValid', () => {
  it.each<[string, number, boolean]>([
    ['at once', 0, true],
    ['at the end of its window', WINDOW - 1, true],
    ['at the start of the next window', WINDOW, true],
    ['at the end of the next window', 2 * WINDOW - 1, true],
    ['two windows later', 2 * WINDOW, false],
    ['much later', 100 * WINDOW, false],
    ['one window earlier (a nonce from the future)', -WINDOW, false],
  ])('judges a nonce checked %s: %s', (_case, offset, valid) => {
    const { clock, nonces } = setup()
    const nonce = nonces.current()
    clock.now = START + offset
    expect(nonces.isValid(nonce)).toBe(valid)
  })

  it('refuses a nonce issued under another secret', () => {
    const { nonces } = setup()
    expect(nonces.isValid(setup(Buffer.alloc(32, 2)).nonces.current())).toBe(false)
  })

  it('refuses a nonce of another window length', () => {
    const { nonces } = setup()
    expect(nonces.isValid(new DpopNonces(SECRET, 60, () => START).current())).toBe(false)
  })

  it('refuses a forged mac', () => {
    const { nonces } = setup()
    const [slice, mac] = split(nonces.current())
    const flipped = `${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`
    expect(nonces.isValid(`${slice}.${flipped}`)).toBe(false)
  })

  it('refuses a valid mac moved to another window', () => {
    const { clock, nonces } = setup()
    const [, mac] = split(nonces.current())
    clock.now = START + WINDOW
    const [nextSlice] = split(nonces.current())
    expect(nonces.isValid(`${nextSlice}.${mac}`)).toBe(false)
  })

  it.each<[string, (slice: string, mac: string) => unknown]>([
    ['undefined', () => undefined],
    ['a number', () => 12345],
    ['null', () => null],
    ['an object', (slice, mac) => ({ slice, mac })],
    ['an empty string', () => ''],
    ['a string without a dot', (slice, mac) => `${slice}${mac}`],
    ['a string starting with the dot', (_slice, mac) => `.${mac}`],
    ['a string ending with the dot', (slice) => `${slice}.`],
    ['a non-base36 slice', (_slice, mac) => `!!.${mac}`],
    ['a slice with trailing garbage that parseInt ignores', (slice, mac) => `${slice}-x.${mac}`],
    ['a slice with a leading zero (same number, other spelling)', (slice, mac) => `0${slice}.${mac}`],
    ['a slice with a plus sign', (slice, mac) => `+${slice}.${mac}`],
    ['an upper-case slice', (slice, mac) => `${slice.toUpperCase()}.${mac}`],
    ['a slice too large for a safe integer', (_slice, mac) => `${'z'.repeat(20)}.${mac}`],
    ['a third part', (slice, mac) => `${slice}.${mac}.x`],
    ['a string over 64 characters', (slice, mac) => `${slice}.${mac}${'A'.repeat(65)}`],
  ])('refuses %s', (_case, build) => {
    const { nonces } = setup()
    const [slice, mac] = split(nonces.current())
    expect(nonces.isValid(build(slice, mac))).toBe(false)
  })

  it.each<[string, (mac: string) => string]>([
    ['one character short', (mac) => mac.slice(0, -1)],
    ['one character long', (mac) => `${mac}A`],
    ['empty', () => ''],
    ['a multi-byte character in place of one', (mac) => `${mac.slice(0, -1)}\u00e9`],
  ])('refuses, without throwing, a mac %s (lengths differ before the timing-safe compare)', (_case, alter) => {
    const { nonces } = setup()
    const [slice, mac] = split(nonces.current())
    expect(() => nonces.isValid(`${slice}.${alter(mac)}`)).not.toThrow()
    expect(nonces.isValid(`${slice}.${alter(mac)}`)).toBe(false)
  })
})
