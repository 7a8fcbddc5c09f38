import { randomUUID } from 'node:crypto'
import { CompactSign, type CompactJWSHeaderParameters } from 'jose'
import type { IssuerKey, TestIssuerAlgorithm } from './issuer-keys.js'
import { checkOptions, optionNames } from './options.js'

/**
 * Options for {@link TestIssuer.signAccessToken}.
 *
 * @example
 * ```ts
 * const options: SignOptions = { audience: 'https://api.example', expiresInSeconds: -60 };
 * ```
 */
export interface SignOptions {
  /** Sign with the newest key of this algorithm. Default: the current key. */
  alg?: TestIssuerAlgorithm
  /** Sign with this key (must be in the issuer's key set). Default: the current key. */
  kid?: string
  /** `typ` header. Default `'at+jwt'` (RFC 9068); `null` omits it. */
  typ?: string | null
  /**
   * Extra protected header members (e.g. `jku`, `x5u`, `crit`), merged over
   * `alg`, `kid` and `typ`. Names listed in `crit` are marked as understood
   * for signing. Default: none.
   */
  header?: Record<string, unknown>
  /** Sets `aud` (before `claims` are applied). Default: no `aud`. */
  audience?: string | string[]
  /** `exp` = `iat` + this. Default `300`; may be negative to mint an expired token. */
  expiresInSeconds?: number
  /** `iat` in seconds since the epoch. Default: now. */
  issuedAt?: number
  /** Sets `nbf` in seconds since the epoch. Default: no `nbf`. */
  notBefore?: number
  /** Claims deleted after defaults and `claims` are applied (e.g. `['exp']`). Default: none. */
  omit?: string[]
  /** Overrides `iss`. Default: the issuer identifier. */
  issuer?: string
  /**
   * Binds the token to a DPoP key (RFC 9449 §6.1): sets `cnf.jkt` to this
   * RFC 7638 thumbprint, e.g. `(await createDpopKey()).jkt`. Combines with
   * `x5tS256` in one `cnf` object. Set before `claims` are applied, so an
   * explicit `cnf` claim replaces it. Default: no `cnf`.
   *
   * @example
   * ```ts
   * const token = await issuer.signAccessToken({ sub: 'alice' }, { dpopJkt: dpopKey.jkt });
   * ```
   */
  dpopJkt?: string
  /**
   * Binds the token to a client certificate (RFC 8705 §3.1): sets
   * `cnf["x5t#S256"]` to this value, e.g. `IssuedCertificate.x5tS256`. Combines
   * with `dpopJkt` in one `cnf` object. Set before `claims` are applied, so an
   * explicit `cnf` claim replaces it. Default: no `cnf`.
   *
   * @example
   * ```ts
   * const token = await issuer.signAccessToken({ sub: svid.spiffeId }, { x5tS256: svid.x5tS256 });
   * ```
   */
  x5tS256?: string
}

/**
 * Builds and signs a JWT access token with an issuer key. No claim is
 * validated, so malformed tokens (e.g. `exp: 'soon'`) can be minted.
 *
 * @param key - Signing key.
 * @param issuer - Default `iss`.
 * @param claims - Claims merged over the defaults (`iss`, `iat`, `exp`, `jti`, `aud`, `nbf`, `cnf`).
 * @param options - See {@link SignOptions}.
 * @returns The compact JWS.
 * @example
 * ```ts
 * const jwt = await signAccessToken(key, 'http://127.0.0.1:1234', { sub: 'alice' }, {});
 * ```
 * @internal
 */
const SIGN_OPTIONS = optionNames<SignOptions>()([
  'alg',
  'kid',
  'typ',
  'header',
  'audience',
  'expiresInSeconds',
  'issuedAt',
  'notBefore',
  'omit',
  'issuer',
  'dpopJkt',
  'x5tS256',
])

export async function signAccessToken(key: IssuerKey, issuer: string, claims: Record<string, unknown>, options: SignOptions): Promise<string> {
  checkOptions('signAccessToken', options, SIGN_OPTIONS)
  const iat = options.issuedAt ?? Math.floor(Date.now() / 1000)
  const payload: Record<string, unknown> = {
    iss: options.issuer ?? issuer,
    iat,
    exp: iat + (options.expiresInSeconds ?? 300),
    jti: randomUUID(),
  }
  if (options.audience !== undefined) payload['aud'] = options.audience
  if (options.notBefore !== undefined) payload['nbf'] = options.notBefore
  if (options.dpopJkt !== undefined || options.x5tS256 !== undefined) {
    const cnf: Record<string, string> = {}
    if (options.dpopJkt !== undefined) cnf['jkt'] = options.dpopJkt
    if (options.x5tS256 !== undefined) cnf['x5t#S256'] = options.x5tS256
    payload['cnf'] = cnf
  }
  Object.assign(payload, claims)
  for (const name of options.omit ?? []) delete payload[name]

  const typ = options.typ === undefined ? 'at+jwt' : options.typ
  const header = {
    alg: key.alg,
    kid: key.kid,
    ...(typ === null ? {} : { typ }),
    ...options.header,
  } as CompactJWSHeaderParameters
  const crit = Array.isArray(header.crit) ? Object.fromEntries(header.crit.filter((n): n is string => typeof n === 'string').map((n) => [n, true])) : undefined
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .sign(key.privateKey, crit === undefined ? undefined : { crit })
}
