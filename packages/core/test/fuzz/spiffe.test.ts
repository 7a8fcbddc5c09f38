/**
 * Property-based tests of `parseSpiffeId` and `compileCallerPattern`: parseSpiffeId accepts
 * exactly the strings a reference regex built from the SPIFFE ID specification (§2) accepts;
 * prefix patterns match exactly on segment boundaries (never `batch-evil` for `batch/*`), exact
 * patterns only themselves; compiling throws only `TypeError`. Seeded: deterministic.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compileCallerPattern, isWorkloadSpiffeId, parseSpiffeId } from '../../src/spiffe.js'

const SEED = 4_242_4242
const RUNS = 1000

/**
 * SPIFFE ID §2 as a regex: lower-case scheme, trust domain of [a-z0-9._-] (1-255), then zero or
 * more "/" + segment of [A-Za-z0-9._-] that is neither "." nor ".."; no trailing slash, query,
 * fragment, port or user info; at most 2048 characters overall.
 */
const REFERENCE = /^spiffe:\/\/[a-z0-9._-]{1,255}(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9._-]+)*$/
const reference = (value: string): boolean => value.length <= 2048 && REFERENCE.test(value)

/** Pieces that sit on the spec's edges. */
const tdChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'abcxyz019.-_') },
  { weight: 1, arbitrary: fc.constantFrom('A', 'Z', ':', '@', '%', '/', ' ', '\u00e9', '+', '!', '[', ']') },
)
const segChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'abzAZ09.-_') },
  { weight: 1, arbitrary: fc.constantFrom('%', '?', '#', ':', '@', ' ', '\\', '+', '~', '\u00e9', '=') },
)
const segment = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: segChar, minLength: 1, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom('', '.', '..', '...', '.a', 'a.') },
)
const spiffeLike = fc
  .tuple(
    fc.oneof(
      { weight: 8, arbitrary: fc.constant('spiffe://') },
      { weight: 1, arbitrary: fc.constantFrom('SPIFFE://', 'Spiffe://', 'spiffe:/', 'spiffe:', 'spiffe:///', 'https://', '') },
    ),
    fc.string({ unit: tdChar, maxLength: 12 }),
    fc.array(segment, { maxLength: 5 }),
    fc.oneof({ weight: 8, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('/', '?x=1', '#f', ':443', '//') }),
  )
  .map(([scheme, td, segments, tail]) => `${scheme}${td}${segments.map((s) => `/${s}`).join('')}${tail}`)
/** Long IDs around the 2048 and 255 limits. */
const longId = fc.tuple(fc.integer({ min: 250, max: 260 }), fc.integer({ min: 2030, max: 2060 })).map(([tdLength, total]) => {
  const head = `spiffe://${'t'.repeat(tdLength)}/`
  return head + 'p'.repeat(Math.max(1, total - head.length))
})

describe('fuzz: parseSpiffeId', () => {
  it('accepts exactly what the spec regex accepts, and the parts rebuild the ID', () => {
    let accepted = 0
    fc.assert(
      fc.property(
        fc.oneof({ weight: 6, arbitrary: spiffeLike }, { weight: 1, arbitrary: longId }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) }),
        (value) => {
          const parsed = parseSpiffeId(value)
          expect(parsed !== undefined, value).toBe(reference(value))
          if (!parsed) return
          accepted++
          expect(parsed.id).toBe(value)
          expect(`spiffe://${parsed.trustDomain}${parsed.segments.map((s) => `/${s}`).join('')}`).toBe(value)
          expect(isWorkloadSpiffeId(value)).toBe(parsed.segments.length > 0)
        },
      ),
      { seed: SEED, numRuns: RUNS },
    )
    expect(accepted).toBeGreaterThan(RUNS / 10)
  })

  it('never throws, whatever it is given (non-strings included)', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        expect(parseSpiffeId(value as string)).toBeUndefined()
      }),
      { seed: SEED + 1, numRuns: 200, examples: [[undefined], [null], [42], [{ toString: () => 'spiffe://a/b' }], [['spiffe://a/b']]] },
    )
  })
})

describe('fuzz: compileCallerPattern', () => {
  // Few distinct pieces, so prefixes, look-alikes and boundary cases collide often.
  const td = fc.constantFrom('example.org', 'example.org.evil', 'other.org', 'example.or')
  const seg = fc.constantFrom('ns', 'batch', 'batch-evil', 'batchx', 'sa', 'worker', 'Batch', 'b', '..', '.', '', 'x%2F')
  const id = fc
    .tuple(td, fc.array(seg, { maxLength: 5 }), fc.constantFrom('', '', '', '/', '?q'))
    .map(([t, s, tail]) => `spiffe://${t}${s.map((x) => `/${x}`).join('')}${tail}`)

  it('a prefix pattern matches exactly the valid workload IDs under it, segment by segment', () => {
    let matched = 0
    fc.assert(
      fc.property(
        td,
        fc.array(
          seg.filter((s) => s !== '' && s !== '.' && s !== '..' && s !== 'x%2F'),
          { maxLength: 3 },
        ),
        id,
        fc.boolean(),
        td,
        fc.array(seg, { maxLength: 3 }),
        fc.constantFrom('', '', '-evil', '/', 'x'),
        (t, prefix, random, derive, t2, more, tail) => {
          // Half the candidates are built from the pattern itself (same or look-alike trust domain, extra segments, a suffix glued on).
          const candidate = derive ? `spiffe://${t2}${[...prefix, ...more].map((s) => `/${s}`).join('')}${tail}` : random
          const source = `spiffe://${t}${prefix.map((s) => `/${s}`).join('')}/*`
          const pattern = compileCallerPattern(source, 'callers')
          const parsed = parseSpiffeId(candidate)
          const expected =
            parsed !== undefined && parsed.trustDomain === t && parsed.segments.length > prefix.length && prefix.every((s, i) => parsed.segments[i] === s)
          if (expected) matched++
          expect(pattern.matches(candidate), `${source} vs ${candidate}`).toBe(expected)
        },
      ),
      { seed: SEED + 2, numRuns: RUNS },
    )
    expect(matched).toBeGreaterThan(RUNS / 20)
  })

  it('an exact pattern (SPIFFE ID or client id) matches only itself', () => {
    fc.assert(
      fc.property(fc.oneof(id, fc.string({ minLength: 1, maxLength: 12 })), fc.oneof(id, fc.string({ maxLength: 12 })), (source, candidate) => {
        let pattern
        try {
          pattern = compileCallerPattern(source, 'callers')
        } catch (error) {
          expect(error).toBeInstanceOf(TypeError)
          return
        }
        if (source.endsWith('/*')) return
        expect(pattern.matches(candidate)).toBe(candidate === source)
        expect(pattern.matches(source)).toBe(true)
      }),
      { seed: SEED + 3, numRuns: RUNS },
    )
  })

  it('compiling anything either yields a pattern or throws a TypeError naming the option', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          id.map((i) => `${i}/*`),
          id,
          fc.string({ maxLength: 20 }),
          fc.anything(),
        ),
        (source) => {
          try {
            compileCallerPattern(source as string, 'callers.x')
          } catch (error) {
            expect(error).toBeInstanceOf(TypeError)
            expect((error as Error).message).toContain('"callers.x"')
          }
        },
      ),
      { seed: SEED + 4, numRuns: 500 },
    )
  })
})
