/** One PEM block (RFC 7468) of a text, as found by {@link scanPem}. */
export interface PemBlock {
  /** The label of its BEGIN line: `CERTIFICATE`, `PRIVATE KEY`, `X509 CRL` ... */
  label: string
  /** The label of its END line: the same in a well-formed block. */
  endLabel: string
  /** What stands between the BEGIN and the END line. */
  body: string
  /** The block itself, `-----BEGIN ...` to `-----END ...-----`. */
  text: string
}

const BEGIN = '-----BEGIN '
const END = '-----END '
const DASHES = '-----'

/** A BEGIN or END line's marker: where it starts and ends, and its label. */
interface Marker {
  start: number
  end: number
  label: string
}

/** `A-Z`, `0-9` and space: the characters of a label. */
const isLabelChar = (code: number): boolean => (code >= 0x41 && code <= 0x5a) || (code >= 0x30 && code <= 0x39) || code === 0x20

/** The first `-----BEGIN <label>-----` (or END) at or after `from`; with `only`, of that label. */
function findMarker(text: string, kind: string, from: number, only: string | undefined): Marker | undefined {
  for (let at = text.indexOf(kind, from); at !== -1; at = text.indexOf(kind, at + 1)) {
    const labelStart = at + kind.length
    let i = labelStart
    while (i < text.length && isLabelChar(text.charCodeAt(i))) i++
    if (i === labelStart || !text.startsWith(DASHES, i)) continue
    const label = text.slice(labelStart, i)
    if (only === undefined || label === only) return { start: at, end: i + DASHES.length, label }
  }
  return undefined
}

/**
 * The PEM blocks of `text`, in order, found in linear time (no backtracking regex: forwarded
 * certificates are untrusted input). A block runs from a BEGIN line to the first END line after
 * it, whatever its label; with `only`, both lines must carry that label and other blocks are
 * skipped. Text between blocks is ignored, as OpenSSL does. A BEGIN with no END after it ends the
 * scan: compare {@link countPemBegins} to find it.
 */
export function scanPem(text: string, only?: string): PemBlock[] {
  const blocks: PemBlock[] = []
  let from = 0
  for (;;) {
    const begin = findMarker(text, BEGIN, from, only)
    const end = begin && findMarker(text, END, begin.end, only)
    if (!begin || !end) return blocks
    blocks.push({ label: begin.label, endLabel: end.label, body: text.slice(begin.end, end.start), text: text.slice(begin.start, end.end) })
    from = end.end
  }
}

/**
 * How many BEGIN lines `text` has (`-----BEGIN `, or with `label` `-----BEGIN <label>-----`):
 * more than {@link scanPem} found blocks means one has no END line (a truncated, half-written file).
 */
export function countPemBegins(text: string, label?: string): number {
  const marker = label === undefined ? BEGIN : `${BEGIN}${label}${DASHES}`
  let count = 0
  for (let at = text.indexOf(marker); at !== -1; at = text.indexOf(marker, at + marker.length)) count++
  return count
}

/** The PEM certificate blocks of a text, in order, found in linear time (no backtracking regex on proxy input). */
export function pemCertificateBlocks(text: string): string[] {
  return scanPem(text, 'CERTIFICATE').map((block) => block.text)
}

/**
 * The DER bytes of a block: its base64 body without line breaks and without the `Name: value`
 * header lines of encrypted legacy keys. `undefined` when that is not canonical padded base64 or
 * is empty (a truncated or garbled file). The patterns are anchored per line: linear time.
 */
export function pemDer(block: PemBlock): Buffer | undefined {
  const base64 = block.body.replace(/^[A-Za-z-]+:.*$/gm, '').replace(/\s+/g, '')
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64) || base64.length % 4 !== 0 || base64.length === 0) return undefined
  return Buffer.from(base64, 'base64')
}
