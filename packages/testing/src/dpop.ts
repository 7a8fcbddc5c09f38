import { createHash, randomUUID, webcrypto } from 'node:crypto'
import { CompactSign, base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, type CompactJWSHeaderParameters, type CryptoKey, type JWK } from 'jose'
import { checkOptions, optionNames } from './options.js'

/**
 * A DPoP key pair (RFC 9449) held by a test client.
 *
 * `EdDSA` keys are Ed25519; RSA keys (`PS256`, `RS256`) are 2048-bit. Both
 * `CryptoKey`s are extractable, so the private JWK can be exported (see
 * {@link DpopProofOptions.includePrivateKey}).
 *
 * @example
 * ```ts
 * const key: DpopKey = await createDpopKey('ES256');
 * const token = await issuer.signAccessToken({ sub: 'alice' }, { dpopJkt: key.jkt });
 * ```
 */
export interface DpopKey {
  /** JWS algorithm the key signs proofs with. */
  alg: 'ES256' | 'ES384' | 'EdDSA' | 'PS256' | 'RS256'
  /** Private signing key. */
  privateKey: CryptoKey
  /** Public verification key. */
  publicKey: CryptoKey
  /**
   * The public key as a bare JWK (`kty` and key members only: no `kid`, `alg`
   * or `use`), exactly what a proof's `jwk` header carries.
   */
  publicJwk: JWK
  /**
   * RFC 7638 SHA-256 JWK thumbprint of {@link DpopKey.publicJwk}, base64url:
   * the value of an access token's `cnf.jkt` claim (RFC 9449 §6.1).
   */
  jkt: string
}

/**
 * Options for {@link createDpopProof}.
 *
 * `method` and `url` describe the request; `accessToken` and `nonce` add the
 * `ath` and `nonce` claims. Every other option is a switch that makes the
 * proof wrong in exactly one way, for negative tests; leave them unset for a
 * valid proof.
 *
 * @example
 * ```ts
 * const options: DpopProofOptions = {
 *   method: 'GET',
 *   url: 'https://api.example/orders?page=2',
 *   accessToken: token,
 * };
 * ```
 */
export interface DpopProofOptions {
  /** HTTP method of the request; the `htm` claim (unless {@link DpopProofOptions.htm} overrides it). */
  method: string
  /**
   * Request URL. The `htu` claim is this URL with its query and fragment cut
   * off, otherwise written verbatim (no normalization), unless
   * {@link DpopProofOptions.htu} overrides it.
   */
  url: string
  /** The access token sent with the proof; adds `ath` = base64url(SHA-256(token)). Default: no `ath`. */
  accessToken?: string
  /** Server-provided nonce; adds the `nonce` claim. Default: no `nonce`. */
  nonce?: string
  /** `typ` header. Default `'dpop+jwt'`; `null` omits it. */
  typ?: string | null
  /**
   * `alg` header override (e.g. `'HS256'` or `'ES384'` on an ES256 key). The
   * signature is still made by the signing key with its own algorithm over
   * the header as written, so the only defect is the `alg` value. Default:
   * the signing key's algorithm. For `alg: 'none'` use {@link DpopProofOptions.unsigned}.
   */
  alg?: string
  /** `htm` claim override (e.g. `'POST'` for a GET request). Default: `method`. */
  htm?: string
  /** `htu` claim override, written verbatim. Default: `url` without query and fragment. */
  htu?: string
  /**
   * `ath` claim override (e.g. the hash of another token); `null` omits it
   * even when `accessToken` is set. Default: computed from `accessToken`.
   */
  ath?: string | null
  /** `iat` claim in seconds since the epoch (e.g. ten minutes ago). Default: now. */
  iat?: number
  /** `jti` claim override (e.g. a replayed value); `null` omits it. Default: a random UUID. */
  jti?: string | null
  /** Omits the `jwk` header. Default `false`. */
  omitJwk?: boolean
  /**
   * `jwk` header override, written verbatim (e.g. another key's public JWK,
   * or a JWK with extra members). Default: the key's public JWK.
   */
  jwk?: JWK | Record<string, unknown>
  /**
   * Puts the private JWK (with `d`) in the `jwk` header instead of the public
   * one; servers must refuse it (RFC 9449 §4.3). Ignored when `jwk` or
   * `omitJwk` is set. Default `false`.
   */
  includePrivateKey?: boolean
  /** Extra protected header members, merged last (they may replace `typ`, `alg` or `jwk`). Default: none. */
  extraHeader?: Record<string, unknown>
  /** Extra claims, merged last (they may replace any claim). Default: none. */
  extraClaims?: Record<string, unknown>
  /**
   * Signs with this key while the `jwk` header still carries the proof key's
   * public JWK, so the signature does not match the embedded key. The `alg`
   * header follows the signing key. Default: the proof key.
   */
  signWith?: DpopKey
  /**
   * Produces an unsecured JWS: header `alg: 'none'` (unless `alg` is given)
   * and an empty signature (`header.payload.`). Default `false`.
   */
  unsigned?: boolean
  /**
   * After signing, flips one character of the payload (the last character of
   * `jti`, or, with no string `jti`, adds a space after `{`), so the claims
   * still parse but the signature no longer matches. Default `false`.
   */
  tamper?: boolean
}

/** Algorithms accepted by {@link createDpopKey}. */
const DPOP_ALGORITHMS: readonly DpopKey['alg'][] = ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256']

/** WebCrypto signature parameters per algorithm (used only for the `alg` override). */
const SUBTLE_SIGN_PARAMS: Record<DpopKey['alg'], webcrypto.AlgorithmIdentifier | webcrypto.EcdsaParams | webcrypto.RsaPssParams> = {
  ES256: { name: 'ECDSA', hash: 'SHA-256' },
  ES384: { name: 'ECDSA', hash: 'SHA-384' },
  EdDSA: { name: 'Ed25519' },
  PS256: { name: 'RSA-PSS', saltLength: 32 },
  RS256: { name: 'RSASSA-PKCS1-v1_5' },
}

/**
 * Creates a DPoP key pair for a test client.
 *
 * @param alg - Proof signing algorithm. Default `'ES256'` (P-256).
 * @returns The key pair, its public JWK and its RFC 7638 thumbprint (`jkt`).
 * @throws TypeError for an unsupported algorithm.
 * @example
 * ```ts
 * import { createDpopKey } from '@callsign/testing';
 *
 * const key = await createDpopKey();        // ES256
 * const rsa = await createDpopKey('PS256');
 * key.jkt; // e.g. '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I'
 * ```
 */
export async function createDpopKey(alg: DpopKey['alg'] = 'ES256'): Promise<DpopKey> {
  if (!DPOP_ALGORITHMS.includes(alg)) {
    throw new TypeError(`createDpopKey: unsupported algorithm "${String(alg)}"`)
  }
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const publicJwk = await exportJWK(publicKey)
  const jkt = await calculateJwkThumbprint(publicJwk, 'sha256')
  return { alg, privateKey, publicKey, publicJwk, jkt }
}

/**
 * Creates a DPoP proof JWT (RFC 9449 §4.2) for one request.
 *
 * A valid proof has the header `{ typ: 'dpop+jwt', alg, jwk }` (the public
 * JWK of `key`) and the claims `jti` (random UUID), `htm`, `htu` (the URL
 * without query and fragment), `iat` (now, in seconds), plus `ath` when
 * `accessToken` is given and `nonce` when `nonce` is given. The switches of
 * {@link DpopProofOptions} each break the proof in exactly one way.
 *
 * @param key - The proof key (see {@link createDpopKey}).
 * @param options - Request method and URL, optional access token and nonce, and switches.
 * @returns The compact JWS.
 * @example
 * ```ts
 * import { createDpopKey, createDpopProof } from '@callsign/testing';
 *
 * const key = await createDpopKey();
 * const token = await issuer.signAccessToken({ sub: 'alice' }, { dpopJkt: key.jkt });
 * const proof = await createDpopProof(key, { method: 'GET', url: 'https://api.example/orders', accessToken: token });
 * await fetch('https://api.example/orders', { headers: { authorization: `DPoP ${token}`, dpop: proof } });
 *
 * // negative tests
 * await createDpopProof(key, { method: 'GET', url, accessToken: token, includePrivateKey: true });
 * await createDpopProof(key, { method: 'GET', url, accessToken: token, iat: Math.floor(Date.now() / 1000) - 600 });
 * ```
 */
const PROOF_OPTIONS = optionNames<DpopProofOptions>()([
  'method',
  'url',
  'accessToken',
  'nonce',
  'typ',
  'alg',
  'htm',
  'htu',
  'ath',
  'iat',
  'jti',
  'omitJwk',
  'jwk',
  'includePrivateKey',
  'extraHeader',
  'extraClaims',
  'signWith',
  'unsigned',
  'tamper',
])

export async function createDpopProof(key: DpopKey, options: DpopProofOptions): Promise<string> {
  checkOptions('createDpopProof', options, PROOF_OPTIONS)
  const signer = options.signWith ?? key

  const header: Record<string, unknown> = {}
  const typ = options.typ === undefined ? 'dpop+jwt' : options.typ
  if (typ !== null) header['typ'] = typ
  header['alg'] = options.alg ?? (options.unsigned ? 'none' : signer.alg)
  if (!options.omitJwk) {
    if (options.jwk !== undefined) header['jwk'] = options.jwk
    else if (options.includePrivateKey) header['jwk'] = await exportJWK(key.privateKey)
    else header['jwk'] = { ...key.publicJwk }
  }
  Object.assign(header, options.extraHeader)

  const payload: Record<string, unknown> = {}
  const jti = options.jti === undefined ? randomUUID() : options.jti
  if (jti !== null) payload['jti'] = jti
  payload['htm'] = options.htm ?? options.method
  payload['htu'] = options.htu ?? stripQueryAndFragment(options.url)
  payload['iat'] = options.iat ?? Math.floor(Date.now() / 1000)
  const ath = options.ath !== undefined ? options.ath : options.accessToken !== undefined ? accessTokenHash(options.accessToken) : null
  if (ath !== null) payload['ath'] = ath
  if (options.nonce !== undefined) payload['nonce'] = options.nonce
  Object.assign(payload, options.extraClaims)

  const encodedHeader = base64url.encode(JSON.stringify(header))
  const payloadBytes = new TextEncoder().encode(JSON.stringify(payload))
  let jws: string
  if (options.unsigned) {
    jws = `${encodedHeader}.${base64url.encode(payloadBytes)}.`
  } else if (header['alg'] === signer.alg) {
    const crit = Array.isArray(header['crit'])
      ? Object.fromEntries((header['crit'] as unknown[]).filter((n): n is string => typeof n === 'string').map((n) => [n, true]))
      : undefined
    jws = await new CompactSign(payloadBytes)
      .setProtectedHeader(header as CompactJWSHeaderParameters)
      .sign(signer.privateKey, crit === undefined ? undefined : { crit })
  } else {
    // The header names another algorithm than the key's, which jose refuses to
    // sign: sign the exact signing input with the key's own algorithm instead.
    const signingInput = `${encodedHeader}.${base64url.encode(payloadBytes)}`
    const signature = await webcrypto.subtle.sign(
      SUBTLE_SIGN_PARAMS[signer.alg],
      signer.privateKey as webcrypto.CryptoKey,
      new TextEncoder().encode(signingInput),
    )
    jws = `${signingInput}.${base64url.encode(new Uint8Array(signature))}`
  }

  if (options.tamper) {
    const [h, , s] = jws.split('.')
    jws = `${h}.${base64url.encode(tamperedPayload(payload))}.${s}`
  }
  return jws
}

/**
 * base64url(SHA-256(accessToken)): the `ath` claim of a DPoP proof.
 *
 * @param accessToken - The access token as sent in `Authorization: DPoP <token>`.
 * @returns The hash, base64url without padding.
 * @example
 * ```ts
 * accessTokenHash('abc'); // 'ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0'
 * ```
 * @internal
 */
function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'utf8').digest('base64url')
}

/**
 * Cuts the query and fragment off a URL, leaving the rest verbatim.
 *
 * @param url - Any URL string.
 * @returns `url` up to (excluding) the first `?` or `#`.
 * @example
 * ```ts
 * stripQueryAndFragment('https://a.example/p?q=1#f'); // 'https://a.example/p'
 * ```
 * @internal
 */
function stripQueryAndFragment(url: string): string {
  const cut = url.search(/[?#]/)
  return cut === -1 ? url : url.slice(0, cut)
}

/**
 * The payload JSON with one character changed: the last character of a
 * non-empty string `jti`, or else a space inserted after the opening brace.
 *
 * @param payload - The signed claims.
 * @returns The altered payload JSON.
 * @example
 * ```ts
 * tamperedPayload({ jti: 'a0' }); // '{"jti":"a1"}'
 * ```
 * @internal
 */
function tamperedPayload(payload: Record<string, unknown>): string {
  const jti = payload['jti']
  if (typeof jti === 'string' && jti.length > 0) {
    const flipped = jti.endsWith('0') ? '1' : '0'
    return JSON.stringify({ ...payload, jti: jti.slice(0, -1) + flipped })
  }
  return '{ ' + JSON.stringify(payload).slice(1)
}
