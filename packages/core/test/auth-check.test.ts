import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { AuthError, type AuthErrorCode } from '../src/errors.js'

const SRC = join(import.meta.dirname, '..', 'src')
const CALL = /\b(new AuthError|invalidToken|invalidRequest|invalidProof)\(/g

/** The argument text of the call that opens at `start` (just after its "("), up to the matching ")". */
function argumentsAt(text: string, start: number): string {
  let depth = 1
  let i = start
  while (depth > 0 && i < text.length) {
    const char = text[i++]
    if (char === '(' || char === '{' || char === '[') depth++
    else if (char === ')' || char === '}' || char === ']') depth--
  }
  return text.slice(start, i - 1)
}

/** The top-level arguments of a call: commas inside strings, templates and brackets do not split. */
function splitArguments(args: string): string[] {
  const parts: string[] = []
  let depth = 0
  let quote: string | undefined
  let current = ''
  for (const char of args) {
    if (quote) {
      if (char === quote) quote = undefined
    } else if (char === "'" || char === '"' || char === '`') quote = char
    else if ('({['.includes(char)) depth++
    else if (')}]'.includes(char)) depth--
    else if (char === ',' && depth === 0) {
      parts.push(current.trim())
      current = ''
      continue
    }
    current += char
  }
  if (current.trim()) parts.push(current.trim())
  return parts
}

/** Every AuthError construction in core's sources, with its file and arguments. */
function throwSites(): Array<{ file: string; call: string; args: string }> {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts'))
  return files.flatMap((file) => {
    const text = readFileSync(join(SRC, file), 'utf8')
    return [...text.matchAll(CALL)]
      .filter((match) => !/(const|function) $/.test(text.slice(Math.max(0, match.index - 9), match.index)))
      .map((match) => ({ file, call: match[1]!, args: argumentsAt(text, match.index + match[0].length) }))
  })
}

describe('the failed check travels with the error', () => {
  const sites = throwSites()

  it('finds the throw sites of core', () => {
    expect(sites.length).toBeGreaterThan(100)
  })

  it('every AuthError core constructs names the check that failed', () => {
    const missing = sites.filter(({ call, args }) => {
      const parts = splitArguments(args)
      // The init (third argument) names the check: `{ ..., check: 'time' }` or `{ check }`.
      if (call === 'new AuthError') return !/^(\{.*\bcheck\b.*\}|.*\? \{ check \} : \{ check, cause \})$/s.test(parts[2] ?? '')
      // The factories take (description, check, cause?): the second argument is the check.
      return parts.length < 2 || !/^('[a-z ]+'|check|answer\.check)$/.test(parts[1]!)
    })
    expect(missing.map(({ file, args }) => `${file}: ${args.slice(0, 80)}`)).toEqual([])
  })

  it('a factory is given the check once: the argument after it is a cause, never the check again', () => {
    const twice = sites.filter(({ call, args }) => {
      if (call === 'new AuthError') return false
      const parts = splitArguments(args)
      return parts.length > 2 && /^'[a-z ]+'$/.test(parts[2]!)
    })
    expect(twice.map(({ file, args }) => `${file}: ${args.slice(0, 80)}`)).toEqual([])
  })

  it.each<[AuthErrorCode, string]>([
    ['invalid_token', 'claims'],
    ['keys_unavailable', 'signature'],
    ['peer_unauthorized', 'client certificate'],
    ['caller_forbidden', 'rule'],
  ])('an error constructed without a check (outside core) reads the usual check of %s', (code, check) => {
    expect(new AuthError(code, 'x').check).toBe(check)
  })

  it('an error keeps the check it was given', () => {
    expect(new AuthError('invalid_token', 'no key of the issuer matches the token', { check: 'signature' }).check).toBe('signature')
  })
})
