// Starts a throwaway `redis-server` child process on a free loopback port for the tests: no
// persistence, no system service. If `redis-server` is missing, the tests fail in CI (CI=true,
// where .ci/run installs it) and are skipped with a loud notice elsewhere, so `pnpm test` works
// on a machine with only Node and npm (`scripts/setup.mjs` installs it when it runs as root).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { describe } from 'vitest'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const BINARY = 'redis-server'
const START_TIMEOUT_MS = 10_000

/** A `redis-server` child process; `kill()` then `start()` brings it back on the same port, empty. */
export interface RedisServer {
  readonly port: number
  /** Start (again) on the same port and wait until it answers PING. */
  start(): Promise<void>
  /** SIGKILL, as a crash would: connections drop without a goodbye. Resolves when it has exited. */
  kill(): Promise<void>
  /** Stop for good and remove the working directory. */
  stop(): Promise<void>
}

/** Fails with an instruction when `redis-server` is not on PATH. */
export function assertRedisServerInstalled(env: NodeJS.ProcessEnv = process.env): void {
  const probe = spawnSync(BINARY, ['--version'], { encoding: 'utf8', env })
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `@callsign/redis tests need a real Redis: "${BINARY}" is not on PATH (${probe.error?.message ?? `exit ${probe.status}`}). ` +
        'Install it (Debian/Ubuntu: apt-get install -y redis-server; .ci/run does this). In CI (CI=true) these tests never skip.',
    )
  }
}

/** True when `redis-server` is on PATH. */
export function redisServerInstalled(): boolean {
  const probe = spawnSync(BINARY, ['--version'], { encoding: 'utf8' })
  return !probe.error && probe.status === 0
}

/**
 * `describe` for suites that need a real Redis: runs when `redis-server` is installed or in CI
 * (where a missing server is a failure), skipped with a notice on a developer machine without it.
 */
export const describeWithRedis = (() => {
  if (redisServerInstalled() || process.env.CI) return describe
  console.warn(
    '\n  ! redis-server is not installed: the real-Redis suites are SKIPPED on this machine (apt-get install -y redis-server to run them; CI always runs them)\n',
  )
  return describe.skip
})()

/** A port nobody listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('could not find a free port')
  return address.port
}

/**
 * Start a `redis-server` on a free loopback port and wait until it answers PING.
 * `persistent`: `appendonly yes` with `appendfsync always`, so every write is on disk before Redis
 * answers it and a SIGKILL + restart (same directory, same port) keeps every key.
 */
export async function startRedisServer(options: { persistent?: boolean } = {}): Promise<RedisServer> {
  assertRedisServerInstalled()
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'callsign-redis-'))
  const persistence = options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']
  let child: ChildProcess | undefined

  const start = async (): Promise<void> => {
    if (child) throw new Error('redis-server is already running')
    const args = [
      '--save',
      '',
      ...persistence,
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--enable-debug-command',
      'local',
      '--loglevel',
      'warning',
    ]
    const proc = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    let output = ''
    proc.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    proc.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<never>((_, reject) => {
      proc.once('error', (error) => reject(new Error(`could not start ${BINARY}: ${error.message}`)))
      proc.once('exit', (code, signal) => reject(new Error(`${BINARY} exited early (${signal ?? code}) on port ${port}:\n${output}`)))
    })
    exited.catch(() => {})
    proc.once('exit', () => {
      if (child === proc) child = undefined
    })
    await Promise.race([waitForPong(port), exited])
  }

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const proc = child
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
      child = undefined
      return
    }
    const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    proc.kill(signal)
    await gone
    child = undefined
  }

  await start()
  return {
    port,
    start,
    kill: () => kill('SIGKILL'),
    stop: async () => {
      await kill('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Send one inline command on a fresh raw connection and resolve with the first reply line. */
export function rawCommand(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let data = ''
    socket.setEncoding('utf8')
    socket.once('error', reject)
    socket.once('connect', () => socket.write(`${command}\r\n`))
    socket.on('data', (chunk: string) => {
      data += chunk
      const end = data.indexOf('\r\n')
      if (end !== -1) {
        socket.destroy()
        resolve(data.slice(0, end))
      }
    })
    socket.once('close', () => reject(new Error(`connection closed before a reply to ${command}`)))
  })
}

async function waitForPong(port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  let last: unknown
  while (Date.now() < deadline) {
    try {
      if ((await rawCommand(port, 'PING')) === '+PONG') return
    } catch (error) {
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`${BINARY} on port ${port} did not answer PING within ${START_TIMEOUT_MS} ms: ${String(last)}`)
}
