import { createHash, X509Certificate } from 'node:crypto'
import type { IssuedCertificate } from './ca.js'
import { checkOptions, optionNames } from './options.js'

/**
 * Options for {@link xfccElement}: the keys of one element of Envoy's
 * `x-forwarded-client-cert` header. Only the keys given are written; nothing
 * is derived from `cert` except `hash: true`.
 *
 * @example
 * ```ts
 * const options: XfccElementOptions = { cert: svid, hash: true, uri: [svid.spiffeId!] };
 * ```
 */
export interface XfccElementOptions {
  /**
   * `By`: the proxy's own URI SAN (Envoy writes one `By` per URI SAN of its
   * certificate). Default: none.
   */
  by?: string
  /**
   * `Hash`: the hex SHA-256 of the client certificate's DER. `true` computes it
   * from `cert` (lower case, as Envoy writes it). Default: none.
   */
  hash?: string | true
  /** `Cert`: the client certificate (URL-encoded PEM). Default: none. */
  cert?: IssuedCertificate | string
  /**
   * `Chain`: PEM certificates concatenated in order, URL-encoded (Envoy puts
   * the leaf first, then the intermediates the client sent). Default: none.
   */
  chain?: string[]
  /** `Subject`: the client certificate's subject, as the proxy prints it. Default: none. */
  subject?: string
  /** `URI`: one key per URI SAN. Default: none. */
  uri?: string[]
  /** `DNS`: one key per DNS SAN. Default: none. */
  dns?: string[]
}

/**
 * One element of Envoy's `x-forwarded-client-cert` (XFCC) header, keys in
 * Envoy's order (`By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`, `DNS`).
 *
 * Values follow Envoy's documented rules: a value containing `,`, `;`, `=` or
 * `"` is double-quoted with `"` escaped as `\"` (and `\` as `\\`); `Cert`,
 * `Chain` and `Subject` are always quoted, as Envoy writes them. `Cert` and
 * `Chain` are URL-encoded PEM (`encodeURIComponent`).
 *
 * @param options - See {@link XfccElementOptions}; only the keys given are written.
 * @returns The element, e.g. `Hash=4f1c...;Cert="-----BEGIN%20CERTIFICATE-----%0A..."`.
 * @throws TypeError if `hash: true` is given without `cert`, or no key is given.
 * @see https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-client-cert
 * @example
 * ```ts
 * const header = xfccHeader(xfccElement({ cert: svid, hash: true, uri: [svid.spiffeId!] }));
 * ```
 */
const XFCC_OPTIONS = optionNames<XfccElementOptions>()(['by', 'hash', 'cert', 'chain', 'subject', 'uri', 'dns'])

export function xfccElement(options: XfccElementOptions): string {
  checkOptions('xfccElement', options, XFCC_OPTIONS)
  const pairs: string[] = []
  const certPem = options.cert === undefined ? undefined : typeof options.cert === 'string' ? options.cert : options.cert.certPem
  if (options.by !== undefined) pairs.push(`By=${xfccValue(options.by)}`)
  if (options.hash !== undefined) {
    if (options.hash === true && certPem === undefined) throw new TypeError('xfccElement: hash: true needs cert')
    pairs.push(`Hash=${xfccValue(options.hash === true ? certificateHash(certPem!) : options.hash)}`)
  }
  if (certPem !== undefined) pairs.push(`Cert=${quoted(encodeURIComponent(certPem))}`)
  if (options.chain !== undefined) pairs.push(`Chain=${quoted(encodeURIComponent(options.chain.join('')))}`)
  if (options.subject !== undefined) pairs.push(`Subject=${quoted(options.subject)}`)
  for (const uri of options.uri ?? []) pairs.push(`URI=${xfccValue(uri)}`)
  for (const dns of options.dns ?? []) pairs.push(`DNS=${xfccValue(dns)}`)
  if (pairs.length === 0) throw new TypeError('xfccElement: no key given')
  return pairs.join(';')
}

/**
 * A whole XFCC header value: elements joined with `,` (the first proxy's
 * element first; a proxy in `APPEND_FORWARD` mode appends its own last).
 *
 * @param elements - Elements made by {@link xfccElement} (or by hand, for malformed headers).
 * @returns The header value.
 * @example
 * ```ts
 * xfccHeader(xfccElement({ uri: ['spiffe://a/x'], hash: 'ab...' }), xfccElement({ cert: svid, hash: true }));
 * ```
 */
export function xfccHeader(...elements: string[]): string {
  return elements.join(',')
}

/**
 * A PEM certificate as nginx's `$ssl_client_escaped_cert` writes it:
 * URL-encoded with every byte except `A-Z a-z 0-9 - . _ ~` as `%XX`
 * (upper-case hex), newlines included.
 *
 * @param pem - One PEM certificate (or an {@link IssuedCertificate}).
 * @returns The escaped PEM.
 * @example
 * ```ts
 * headers['x-ssl-client-cert'] = nginxEscapedCert(svid.certPem);
 * ```
 */
export function nginxEscapedCert(pem: string | IssuedCertificate): string {
  const text = typeof pem === 'string' ? pem : pem.certPem
  let out = ''
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/**
 * Hex SHA-256 of a certificate's DER, lower case: Envoy's XFCC `Hash`.
 *
 * @param pem - A PEM certificate.
 * @returns 64 hexadecimal digits.
 * @example
 * ```ts
 * certificateHash(svid.certPem); // '4f1c...'
 * ```
 */
export function certificateHash(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')
}

function quoted(value: string): string {
  return `"${value.replace(/(["\\])/g, '\\$1')}"`
}

/** Quoted only when it has to be (Envoy's rule: `,`, `;`, `=` or `"`; also a backslash or outer spaces). */
function xfccValue(value: string): string {
  return /[,;="\\]|^\s|\s$/.test(value) ? quoted(value) : value
}
