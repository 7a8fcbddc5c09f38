/**
 * Helpers for the attack suite (test/attacks): raw JWS signing with a test issuer's key (any
 * header/payload text, duplicate keys and non-JSON numbers included), signature malleation
 * (ECDSA high-S, Ed25519 S + L), a recorder that remembers every status a family produced (for the
 * "never a 5xx" checks) and a keep-alive agent for request floods.
 */
import { Agent } from 'node:https'
import { webcrypto } from 'node:crypto'
import type { TestIssuer } from '@callsign/testing'
import type { RunningApp } from './adapters.js'
import type { CallOptions, CallResult } from './client.js'

/** base64url of a string (UTF-8), bytes, or a value serialized as JSON. */
export function b64url(value: string | Uint8Array | object): string {
  if (typeof value === 'string') return Buffer.from(value, 'utf8').toString('base64url')
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64url')
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url')
}

const SIGN_PARAMS: Record<string, webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams | webcrypto.RsaPssParams> = {
  ES256: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
  ES384: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams,
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
  PS256: { name: 'RSA-PSS', saltLength: 32 } as webcrypto.RsaPssParams,
  EdDSA: { name: 'Ed25519' },
}

/**
 * A compact JWS over exactly `header` and `payload` (strings are used verbatim, bytes too;
 * objects are JSON-serialized), signed with the issuer key `kid` (default: the current key) using
 * that key's own algorithm, whatever the header says.
 */
export async function signRaw(
  issuer: TestIssuer,
  header: string | Uint8Array | object,
  payload: string | Uint8Array | object,
  kid = issuer.currentKid,
): Promise<string> {
  const jwk = issuer.publicJwks().keys.find((key) => key.kid === kid)
  if (!jwk?.alg) throw new Error(`issuer has no key ${kid}`)
  const input = `${b64url(header)}.${b64url(payload)}`
  const params = SIGN_PARAMS[jwk.alg]
  if (!params) throw new Error(`no signing parameters for ${jwk.alg}`)
  const signature = await webcrypto.subtle.sign(params, issuer.privateKey(kid) as unknown as webcrypto.CryptoKey, new TextEncoder().encode(input))
  return `${input}.${Buffer.from(signature).toString('base64url')}`
}

/** The key id of the issuer's newest key of `alg`. */
export function kidOf(issuer: TestIssuer, alg: string): string {
  const key = issuer
    .publicJwks()
    .keys.filter((k) => k.alg === alg)
    .at(-1)
  if (!key?.kid) throw new Error(`issuer has no ${alg} key`)
  return key.kid
}

/** Order of the P-256 group. */
export const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551')
/** Order of the Ed25519 base point. */
export const ED25519_L = (1n << 252n) + 27742317777372353535851937790883648493n

const toBig = (bytes: Uint8Array): bigint => BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`)
const fromBig = (value: bigint, length: number): Buffer => Buffer.from(value.toString(16).padStart(length * 2, '0'), 'hex')

/** Replace the signature of a compact JWS. */
export function withSignature(jws: string, signature: Uint8Array): string {
  const [h, p] = jws.split('.')
  return `${h}.${p}.${Buffer.from(signature).toString('base64url')}`
}

/** ES256 malleation: the same R with S' = n - S (the "high-S twin"), valid for the same message and key. */
export function es256HighS(jws: string): string {
  const sig = Buffer.from(jws.split('.')[2]!, 'base64url')
  if (sig.length !== 64) throw new Error('not an ES256 signature')
  const s = toBig(sig.subarray(32))
  return withSignature(jws, Buffer.concat([sig.subarray(0, 32), fromBig(P256_N - s, 32)]))
}

/** Ed25519 non-canonical S: S + L (little-endian), still below 2^256. */
export function ed25519SPlusL(jws: string): string {
  const sig = Buffer.from(jws.split('.')[2]!, 'base64url')
  if (sig.length !== 64) throw new Error('not an Ed25519 signature')
  const s = toBig(Buffer.from(sig.subarray(32)).reverse())
  const big = fromBig(s + ED25519_L, 32).reverse()
  return withSignature(jws, Buffer.concat([sig.subarray(0, 32), big]))
}

/**
 * Every status a family of attacks produced, per app, so a last test can assert that none of
 * them was a server error. `call` is the fixture's (or any) call function.
 */
export interface StatusRecorder {
  call(app: RunningApp, options?: CallOptions): Promise<CallResult>
  readonly statuses: Array<{ status: number; what: string }>
}

export function statusRecorder(call: (app: RunningApp, options?: CallOptions) => Promise<CallResult>): StatusRecorder {
  const statuses: Array<{ status: number; what: string }> = []
  return {
    statuses,
    async call(app, options = {}) {
      const res = await call(app, options)
      statuses.push({ status: res.status, what: `${options.method ?? 'GET'} ${options.path ?? '/whoami'} -> ${res.status} ${res.text.slice(0, 120)}` })
      return res
    },
  }
}

/** A keep-alive agent for floods of requests (close it with `destroy()`). */
export const keepAliveAgent = (maxSockets = 8): Agent => new Agent({ keepAlive: true, maxSockets })

/** Run `task(i)` for i in [0, count) with at most `concurrency` at once; results in order. */
export async function pool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count)
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const i = next++
        results[i] = await task(i)
      }
    }),
  )
  return results
}

/** A valid token whose three segments all have unused low bits (length not a multiple of 4). */
export async function spelledToken(signWith: (claims: Record<string, unknown>, header: Record<string, unknown>) => Promise<string>): Promise<string> {
  for (let h = 0; h < 4; h++) {
    for (let p = 0; p < 4; p++) {
      const token = await signWith({ pad: 'x'.repeat(p) }, { pad: 'y'.repeat(h) })
      if (token.split('.').every((segment) => segment.length % 4 !== 0)) return token
    }
  }
  throw new Error('no padding gave three segments with unused bits')
}

/** `token` with segment `index` spelled with its last character's lowest (unused) bit set. */
export function respell(token: string, index: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const parts = token.split('.')
  const segment = parts[index]!
  if (segment.length % 4 === 0) throw new Error('segment has no unused bits')
  parts[index] = segment.slice(0, -1) + alphabet[alphabet.indexOf(segment.at(-1)!) ^ 1]
  if (!Buffer.from(parts[index]!, 'base64url').equals(Buffer.from(segment, 'base64url'))) throw new Error('respelling changed the bytes')
  return parts.join('.')
}
