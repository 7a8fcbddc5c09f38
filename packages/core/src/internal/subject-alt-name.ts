/**
 * Split Node's `subjectAltName` string. Node quotes (JSON-style) any value that contains a
 * separator or other ambiguous character (CVE-2021-44532), so it is never split on `", "` blindly.
 * Returns `undefined` when the string cannot be parsed unambiguously.
 */
export function parseSubjectAltName(value: string | undefined): Array<[type: string, value: string]> | undefined {
  const entries: Array<[string, string]> = []
  if (!value) return entries
  let i = 0
  while (i < value.length) {
    const colon = value.indexOf(':', i)
    if (colon === -1) return undefined
    const type = value.slice(i, colon)
    if (!/^[A-Za-z ]+$/.test(type)) return undefined
    i = colon + 1
    let entry: string
    if (value[i] === '"') {
      let j = i + 1
      while (j < value.length && value[j] !== '"') j += value[j] === '\\' ? 2 : 1
      if (j >= value.length) return undefined
      try {
        entry = JSON.parse(value.slice(i, j + 1)) as string
      } catch {
        return undefined
      }
      i = j + 1
    } else {
      const end = value.indexOf(', ', i)
      entry = end === -1 ? value.slice(i) : value.slice(i, end)
      i = end === -1 ? value.length : end
    }
    entries.push([type, entry])
    if (i < value.length) {
      if (!value.startsWith(', ', i)) return undefined
      i += 2
    }
  }
  return entries
}
