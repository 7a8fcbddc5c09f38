/**
 * A real nginx terminating client mTLS in front of an app and forwarding the client certificate
 * as `$ssl_client_escaped_cert`, run as a child process from a throwaway prefix directory.
 * `.ci/run` installs nginx. Without it the scenarios fail in CI (CI=true) and are skipped with a
 * loud notice elsewhere, as the real-Redis suites are.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { describe } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** True when an `nginx` binary runs here. */
export const nginxAvailable: boolean = (() => {
  try {
    return spawnSync('nginx', ['-v'], { stdio: 'ignore' }).status === 0
  } catch {
    return false
  }
})()

/** `describe` for suites that need nginx: skipped with a notice only outside CI when it is missing. */
export function describeWithNginx(): typeof describe | typeof describe.skip {
  if (nginxAvailable || process.env.CI) return describe
  console.warn(
    '\n  ! nginx is not installed: the real-nginx scenarios are SKIPPED on this machine (apt-get install -y nginx to run them; CI always runs them)\n',
  )
  return describe.skip
}

export interface NginxOptions {
  /** The app nginx proxies to, `https://127.0.0.1:<port>`. */
  target: string
  /** nginx's server certificate and key (downstream TLS). */
  server: { certPem: string; keyPem: string }
  /** CA for client certificates and for the app's server certificate. */
  caPem: string
  /** nginx's own client certificate towards the app (`proxy_ssl_certificate`). */
  proxyIdentity: { certPem: string; keyPem: string }
  /** Header carrying `$ssl_client_escaped_cert`. Default `X-SSL-Client-Cert`. */
  header?: string
  /** `ssl_verify_client`. Default `optional`. */
  verifyClient?: 'on' | 'optional'
}

export interface RunningNginx {
  /** `https://127.0.0.1:<port>` */
  url: string
  /** Fast shutdown (SIGTERM), then the prefix directory is removed. Idempotent. */
  close(): Promise<void>
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function accepting(port: number, child: ChildProcess, deadline: number): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}`)
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (up) return
    if (Date.now() > deadline) throw new Error('nginx did not start listening in time')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Start nginx in front of `options.target`; resolves once it accepts connections. */
export async function startNginx(options: NginxOptions): Promise<RunningNginx> {
  const dir = await mkdtemp(join(tmpdir(), 'callsign-nginx-'))
  const port = await freePort()
  const target = new URL(options.target)
  await Promise.all([
    writeFile(join(dir, 'server.pem'), options.server.certPem),
    writeFile(join(dir, 'server.key'), options.server.keyPem),
    writeFile(join(dir, 'ca.pem'), options.caPem),
    writeFile(join(dir, 'proxy.pem'), options.proxyIdentity.certPem),
    writeFile(join(dir, 'proxy.key'), options.proxyIdentity.keyPem),
  ])
  const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${join(dir, 'server.pem')};
    ssl_certificate_key ${join(dir, 'server.key')};
    ssl_client_certificate ${join(dir, 'ca.pem')};
    ssl_verify_client ${options.verifyClient ?? 'optional'};
    location / {
      proxy_pass https://127.0.0.1:${target.port};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header ${options.header ?? 'X-SSL-Client-Cert'} $ssl_client_escaped_cert;
      proxy_ssl_certificate ${join(dir, 'proxy.pem')};
      proxy_ssl_certificate_key ${join(dir, 'proxy.key')};
      proxy_ssl_trusted_certificate ${join(dir, 'ca.pem')};
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
    }
  }
}
`
  await writeFile(join(dir, 'nginx.conf'), conf)
  const child = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off; master_process on;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
      await rm(dir, { recursive: true, force: true })
    })()
    return closing
  }
  try {
    await accepting(port, child, Date.now() + 10_000)
  } catch (error) {
    await close()
    throw new Error(`${(error as Error).message}: ${stderr.trim()}`, { cause: error })
  }
  return { url: `https://127.0.0.1:${port}`, close }
}
