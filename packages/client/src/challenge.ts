/**
 * What a service's refusal says: its `WWW-Authenticate` challenges (RFC 9110 §11.6.1) and its
 * RFC 9457 problem document, both read with bounds (a hostile or broken service cannot make the
 * client parse megabytes).
 */
import type { Challenge } from './errors.js'

/** Longer `WWW-Authenticate` values are not parsed (Node refuses more than 16 KiB of headers anyway). */
const MAX_HEADER_LENGTH = 8192
const MAX_CHALLENGES = 16
const MAX_PARAMETERS = 32
/** Problem documents larger than this are not parsed. */
export const MAX_PROBLEM_BYTES = 16 * 1024

/** RFC 9110 §5.6.2 token. */
const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y

function skip(text: string, from: number, characters: string): number {
  let i = from
  while (i < text.length && characters.includes(text[i]!)) i++
  return i
}

function tokenAt(text: string, at: number): string | undefined {
  TOKEN.lastIndex = at
  return TOKEN.exec(text)?.[0]
}

/** A quoted-string starting at `at` (the opening quote): its unescaped value and the index after it. */
function quotedAt(text: string, at: number): [value: string, end: number] | undefined {
  let value = ''
  for (let i = at + 1; i < text.length; i++) {
    const character = text[i]!
    if (character === '"') return [value, i + 1]
    if (character === '\\') {
      i++
      if (i >= text.length) return undefined
      value += text[i]
    } else {
      value += character
    }
  }
  return undefined
}

/**
 * Parse a `WWW-Authenticate` value (several headers joined with `, ` included) into challenges:
 * each scheme as sent, its parameter names in lower case, quoted values unescaped. Lenient where
 * services are sloppy (a missing comma between parameters), strict where it matters: parsing
 * stops at the first thing that is not a scheme or a parameter, and what was read so far is
 * returned. A `token68` (as in `Basic <credentials>`) is not returned. Bounded: at most 16
 * challenges of 32 parameters each, nothing parsed above 8 KiB; a repeated parameter keeps its
 * first value.
 *
 * @example
 * parseChallenges('DPoP error="use_dpop_nonce", algs="ES256"') // [{ scheme: 'DPoP', parameters: { error: 'use_dpop_nonce', algs: 'ES256' } }]
 */
export function parseChallenges(header: string | null | undefined): Challenge[] {
  const challenges: Array<{ scheme: string; parameters: Record<string, string> }> = []
  if (!header || header.length > MAX_HEADER_LENGTH) return challenges
  let current: { scheme: string; parameters: Record<string, string> } | undefined
  let i = 0
  while (true) {
    i = skip(header, i, ' \t,')
    if (i >= header.length) break
    const name = tokenAt(header, i)
    if (name === undefined) break
    const afterName = skip(header, i + name.length, ' \t')
    if (current !== undefined && header[afterName] === '=') {
      const at = skip(header, afterName + 1, ' \t')
      let value: string | undefined
      if (header[at] === '"') {
        const quoted = quotedAt(header, at)
        if (quoted === undefined) break
        ;[value, i] = quoted
      } else {
        value = tokenAt(header, at)
        if (value === undefined) break
        i = at + value.length
      }
      const key = name.toLowerCase()
      const parameters = current.parameters
      if (!Object.hasOwn(parameters, key) && Object.keys(parameters).length < MAX_PARAMETERS) parameters[key] = value
      continue
    }
    if (challenges.length === MAX_CHALLENGES) break
    current = { scheme: name, parameters: Object.create(null) as Record<string, string> }
    challenges.push(current)
    i = afterName
    // A token68 (or anything else that is not a parameter) right after the scheme: skip to the next comma.
    if (i < header.length && header[i] !== ',' && header[skip(header, i + (tokenAt(header, i)?.length ?? 0), ' \t')] !== '=') {
      const comma = header.indexOf(',', i)
      i = comma === -1 ? header.length : comma
    }
  }
  return challenges.map((challenge) => Object.freeze({ scheme: challenge.scheme, parameters: Object.freeze(challenge.parameters) }))
}

/** The `error` of the first challenge of `scheme` (case-insensitive) that has one, or of any challenge when `scheme` is omitted. */
export function challengeError(challenges: readonly Challenge[], scheme?: string): string | undefined {
  const wanted = scheme?.toLowerCase()
  return challenges.find((challenge) => (wanted === undefined || challenge.scheme.toLowerCase() === wanted) && challenge.parameters.error !== undefined)
    ?.parameters.error
}

/** True for `application/problem+json` (with or without parameters). */
export function isProblemResponse(contentType: string | null): boolean {
  return contentType !== null && /^\s*application\/problem\+json\s*(?:;|$)/i.test(contentType)
}

/**
 * Read an RFC 9457 problem document from `body`: at most {@link MAX_PROBLEM_BYTES} (a longer body
 * is cancelled and gives `undefined`), a JSON object, else `undefined`.
 */
export async function readProblem(body: ReadableStream<Uint8Array> | null): Promise<Record<string, unknown> | undefined> {
  if (body === null) return undefined
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > MAX_PROBLEM_BYTES) {
        await reader.cancel().catch(() => {})
        return undefined
      }
      chunks.push(value)
    }
  } catch {
    return undefined
  }
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}
