/**
 * DPoP helpers for the sender-constraint scenarios: the `htu` a request is checked against,
 * requests carrying `Authorization: DPoP` + a proof (the kit's builder or any other proof), a
 * controllable guard clock, and replay stores that count, fail, hang or forget.
 */
import { createHash } from 'node:crypto'
import { MemoryReplayStore, type ReplayStore } from '@callsign/core'
import { createDpopProof, type DpopKey, type DpopProofOptions } from '@callsign/testing'
import type { RunningApp } from './adapters.js'
import type { CallOptions, ClientIdentity } from './client.js'
import { refuse, type Outcome, type RefusalExpectation } from './expectations.js'

/**
 * The `htu` core expects without `dpop.origin`: `https://<Host><path>`. The test client connects to
 * `127.0.0.1:<port>` and sends that as `Host`, so it is the app URL plus the path (query and
 * fragment cut off).
 */
export function htuFor(app: RunningApp | string, path = '/whoami'): string {
  const url = new URL(path, typeof app === 'string' ? app : app.url)
  return `${url.origin}${url.pathname}`
}

/** base64url(SHA-256(token)): a proof's `ath`. */
export const athOf = (token: string): string => createHash('sha256').update(token).digest('base64url')

export interface DpopRequest {
  method?: 'GET' | 'POST'
  /** Path and query of the request. Default `/whoami`. */
  path?: string
  /** Authorization scheme as written. Default `DPoP`. */
  scheme?: string
  cert?: ClientIdentity
  headers?: Record<string, string | string[]>
  /**
   * The `DPoP` header: a proof (or several, sent as duplicate headers), `null` to send none.
   * Default: a valid proof of `key` built by `@callsign/testing` for this request.
   */
  proof?: string | string[] | null
  /** Passed to `createDpopProof` for the default proof (switches, `url`, `nonce` ...). */
  proofOptions?: Partial<DpopProofOptions>
  /** Sign the default proof with this key (its `jwk` header) instead of `key`. */
  proofKey?: DpopKey
}

/** Request options for `Authorization: DPoP <token>` with a proof (see {@link DpopRequest}). */
export async function dpopRequest(app: RunningApp, key: DpopKey, token: string, request: DpopRequest = {}): Promise<CallOptions> {
  const method = request.method ?? 'GET'
  const path = request.path ?? '/whoami'
  const proof =
    request.proof !== undefined
      ? request.proof
      : await createDpopProof(request.proofKey ?? key, { method, url: htuFor(app, path), accessToken: token, ...request.proofOptions })
  const headers: Record<string, string | string[]> = { ...request.headers }
  if (proof !== null) headers.dpop = proof
  return {
    method,
    path,
    authorization: `${request.scheme ?? 'DPoP'} ${token}`,
    headers,
    ...(request.cert ? { cert: request.cert } : {}),
  }
}

/** A 401 `invalid_dpop_proof` (error in the `DPoP` challenge). */
export const invalidProof = (extra: Partial<RefusalExpectation> = {}): Outcome =>
  refuse({ status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP', ...extra })

/** A 401 `invalid_token` in the challenge of `scheme`. */
export const invalidTokenIn = (scheme: 'Bearer' | 'DPoP', extra: Partial<RefusalExpectation> = {}): Outcome =>
  refuse({ status: 401, code: 'invalid_token', errorScheme: scheme, ...extra })

/** A guard clock (`now` option) that follows `Date.now` until frozen. */
export interface TestClock {
  /** Pass as the guard's `now`. */
  readonly now: () => number
  /** Freeze at `ms` (default: the current second, so `now() / 1000` is whole). Returns the frozen epoch seconds. */
  freeze(ms?: number): number
  /** Move a frozen clock forward (freezes it first if needed). Returns the new epoch seconds. */
  advance(seconds: number): number
  /** Follow `Date.now` again. */
  release(): void
}

export function createClock(): TestClock {
  let frozen: number | undefined
  const clock: TestClock = {
    now: () => frozen ?? Date.now(),
    freeze(ms = Math.floor(Date.now() / 1000) * 1000) {
      frozen = ms
      return ms / 1000
    },
    advance(seconds) {
      if (frozen === undefined) clock.freeze()
      frozen! += seconds * 1000
      return frozen! / 1000
    },
    release() {
      frozen = undefined
    },
  }
  return clock
}

/** A working store that counts the calls it gets (to assert refused proofs never reach it). */
export interface CountingReplayStore extends ReplayStore {
  readonly calls: number
}

export function countingReplayStore(inner: ReplayStore = new MemoryReplayStore()): CountingReplayStore {
  let calls = 0
  return {
    get calls() {
      return calls
    },
    markUsed(key, ttlSeconds) {
      calls++
      return inner.markUsed(key, ttlSeconds)
    },
  }
}

/** A store whose backend is down: every `markUsed` rejects. */
export function rejectingReplayStore(): CountingReplayStore {
  return countingReplayStore({ markUsed: () => Promise.reject(new Error('replay store connection refused')) })
}

/** A store whose client throws synchronously (no promise at all). */
export function throwingReplayStore(): CountingReplayStore {
  return countingReplayStore({
    markUsed() {
      throw new Error('replay store client not connected')
    },
  })
}

/** A store that never answers. */
export function hangingReplayStore(): CountingReplayStore {
  return countingReplayStore({ markUsed: () => new Promise<boolean>(() => {}) })
}

/** A store that forgets at once: every identifier looks fresh (as after its TTL expired). */
export function forgetfulReplayStore(): CountingReplayStore {
  return countingReplayStore({ markUsed: () => true })
}
