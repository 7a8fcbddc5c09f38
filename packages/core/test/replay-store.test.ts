import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it, vi } from 'vitest'
import { MemoryReplayStore } from '../src/replay-store.js'

describe('MemoryReplayStore', () => {
  it('answers true for a new key, then false for it', () => {
    const store = new MemoryReplayStore()
    expect(store.markUsed('a', 60)).toBe(true)
    expect(store.markUsed('a', 60)).toBe(false)
    expect(store.markUsed('a', 60)).toBe(false)
    expect(store.size).toBe(1)
  })

  it('keeps keys apart', () => {
    const store = new MemoryReplayStore()
    expect(['a', 'b', 'A', 'a '].map((key) => store.markUsed(key, 60))).toEqual([true, true, true, true])
    expect(store.size).toBe(4)
  })

  it('lets exactly one of two concurrent calls with the same key win', async () => {
    const store = new MemoryReplayStore()
    const answers = await Promise.all([Promise.resolve(store.markUsed('k', 60)), Promise.resolve(store.markUsed('k', 60))])
    expect(answers.sort()).toEqual([false, true])
  })

  it('forgets a key once its ttl has passed, and not before', async () => {
    const store = new MemoryReplayStore()
    store.markUsed('short', 0.001) // 1 ms
    store.markUsed('long', 60)
    await sleep(30)
    expect(store.markUsed('short', 60)).toBe(true)
    expect(store.markUsed('long', 60)).toBe(false)
  })

  it('expires a key given a zero ttl (never keeps it forever)', async () => {
    const store = new MemoryReplayStore()
    expect(store.markUsed('zero', 0)).toBe(true)
    await sleep(30)
    expect(store.markUsed('zero', 60)).toBe(true)
  })

  it('stays within maxEntries under a flood of unique keys and reports eviction once', () => {
    const onEvict = vi.fn()
    const store = new MemoryReplayStore({ maxEntries: 1000, onEvict })
    let largest = 0
    for (let i = 0; i < 100_000; i++) {
      store.markUsed(`jti-${i}`, 60)
      largest = Math.max(largest, store.size)
    }
    expect(largest).toBe(1000)
    expect(store.size).toBe(1000)
    expect(onEvict).toHaveBeenCalledTimes(1)
    // The most recent keys are still remembered; the oldest were dropped.
    expect(store.markUsed('jti-99999', 60)).toBe(false)
    expect(store.markUsed('jti-0', 60)).toBe(true)
  })

  it('does not report eviction while within maxEntries', () => {
    const onEvict = vi.fn()
    const store = new MemoryReplayStore({ maxEntries: 3, onEvict })
    for (const key of ['a', 'b', 'c']) store.markUsed(key, 60)
    store.markUsed('a', 60)
    expect(onEvict).not.toHaveBeenCalled()
    store.markUsed('d', 60)
    expect(onEvict).toHaveBeenCalledTimes(1)
  })

  it('evicts without onEvict', () => {
    const store = new MemoryReplayStore({ maxEntries: 1 })
    expect(store.markUsed('a', 60)).toBe(true)
    expect(store.markUsed('b', 60)).toBe(true)
    expect(store.size).toBe(1)
  })

  it.each<[string, unknown]>([
    ['zero', 0],
    ['a negative number', -1],
    ['a fraction', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a string', '1000'],
  ])('refuses maxEntries of %s', (_case, maxEntries) => {
    expect(() => new MemoryReplayStore({ maxEntries: maxEntries as number })).toThrow(new TypeError('Callsign: "maxEntries" must be a positive whole number'))
  })

  it('accepts maxEntries of 1', () => {
    expect(() => new MemoryReplayStore({ maxEntries: 1 })).not.toThrow()
  })

  it('does not report an eviction when the entry pushed out had already expired', async () => {
    const onEvict = vi.fn()
    const store = new MemoryReplayStore({ maxEntries: 1, onEvict })
    expect(store.markUsed('short-lived', 0.001)).toBe(true)
    await sleep(20)
    expect(store.markUsed('next', 60)).toBe(true)
    expect(onEvict).not.toHaveBeenCalled()
    expect(store.markUsed('third', 60)).toBe(true)
    expect(onEvict).toHaveBeenCalledTimes(1)
  })
})

describe('MemoryReplayStore on an injected clock (now)', () => {
  it('expires used keys and revoked keys when that clock passes their ttl, whatever the wall clock says', () => {
    let now = Date.parse('2031-05-06T07:08:09Z')
    const store = new MemoryReplayStore({ now: () => now })
    expect(store.markUsed('jti', 60)).toBe(true)
    store.revoke('token', 60)
    now += 59_999
    expect(store.markUsed('jti', 60)).toBe(false)
    expect(store.isRevoked('token')).toBe(true)
    now += 2
    expect(store.markUsed('jti', 60)).toBe(true)
    expect(store.isRevoked('token')).toBe(false)
  })

  it('tells an expired entry from a live one by that clock when it evicts', () => {
    let now = Date.parse('2031-05-06T07:08:09Z')
    const onEvict = vi.fn()
    const store = new MemoryReplayStore({ maxEntries: 1, onEvict, now: () => now })
    store.markUsed('first', 60)
    now += 61_000
    store.markUsed('second', 60)
    expect(onEvict).not.toHaveBeenCalled()
    store.markUsed('third', 60)
    expect(onEvict).toHaveBeenCalledTimes(1)
  })

  it('refuses a now that is not a function', () => {
    expect(() => new MemoryReplayStore({ now: 1000 as never })).toThrow(new TypeError('Callsign: "now" must be a function returning epoch milliseconds'))
  })
})
