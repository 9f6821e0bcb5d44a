import type { Command } from 'commander';
import { goArch, hostInfo } from '../engine/host.js';
import { getEngine, out, type Ctx } from './context.js';
import { renderTemplate } from './format.js';
import { registerSystemHousekeeping } from './everyday.js';
import { VERSION, bunVersion } from '../lib/version.js';
import { DEFAULT_API_SOCKET } from '../engine/paths.js';

const SERVICE_HELP = `
Serves, in the foreground, until SIGTERM or SIGINT:

  --listen unix:///PATH   the REST API: Docker's Engine API (v1.41) and Podman's libpod API, on a
                          Unix socket (mode 0660, root). The default, with no --listen:
                          unix:///run/ferry/ferry.sock. Clients: DOCKER_HOST=unix:///run/ferry/ferry.sock
                          docker ps; podman --remote --url unix:///run/ferry/ferry.sock ps.
  --listen tcp://ADDR:PORT --secret-file FILE
                          migrations from \`ferry migrate CTR ferry://HOST:PORT --secret-file FILE\`,
                          without ssh. Every connection is mutual TLS 1.3 with a certificate derived
                          from FILE (the same file, copied securely, on both hosts); there is no
                          unauthenticated mode. FILE must be readable by its owner only and hold at
                          least 32 bytes of key material.

  --listen tcp://ADDR:PORT --tls-cert CERT --tls-key KEY --tls-verify CA
                          the same REST API over TLS (Docker's --tlsverify convention): clients
                          must present a certificate signed by CA; there is no unauthenticated
                          TCP mode. Clients: DOCKER_HOST=tcp://HOST:PORT DOCKER_TLS_VERIFY=1
                          DOCKER_CERT_PATH=DIR docker ps (DIR holds ca.pem, cert.pem, key.pem).
                          Several tcp:// and unix:// listeners may be given.

A Unix socket and the migrations may be given together (one process serves both); the API on TCP
and the migrations need a service each:

  head -c 32 /dev/urandom | base64 > /etc/ferry/secret; chmod 600 /etc/ferry/secret
  ferry system service --listen unix:///run/ferry/ferry.sock --listen tcp://0.0.0.0:7797 --secret-file /etc/ferry/secret

The service uses this --root/--runroot, with the same state and locks as the CLI; containers keep
running when it stops. On a signal it stops accepting, lets requests and migrations in progress
finish (a second signal cuts them; uncommitted migrations roll back and run again on their source),
and removes its socket.`;

export function registerSystemCommands(program: Command, ctx: Ctx): void {
  const info = async (f: { format?: string }): Promise<void> => {
    const doc = await hostInfo(getEngine(ctx));
    if (f.format === 'json') return out(JSON.stringify(doc, null, 4) + '\n');
    if (f.format) return out(renderTemplate(f.format, [doc]));
    out(toYaml(doc));
  };
  program.command('info').description('show host, runtime and CRIU information').option('-f, --format <format>', 'json or a Go template').action(info);
  const system = program.command('system').description('manage ferry');
  system.command('info').option('-f, --format <format>', 'json or a Go template').action(info);
  registerSystemHousekeeping(system, ctx);
  system
    .command('service')
    .description('serve the Docker- and Podman-compatible API on a Unix socket, and/or migrations over TCP (mutual TLS)')
    .option('--listen <url>', `unix:///PATH (the API; default ${DEFAULT_API_SOCKET}) or tcp://ADDR:PORT (migrations); repeatable`, (v: string, prev: string[] = []) => [...prev, v])
    .option('--secret-file <file>', 'with tcp://: migrations; the shared secret (at least 32 bytes, mode 600)')
    .option('--tls-cert <file>', 'with tcp://: the API over TLS; the server certificate (PEM)')
    .option('--tls-key <file>', 'with tcp://: the server certificate\'s key (PEM)')
    .option('--tls-verify <ca>', 'with tcp://: the CA (PEM) that client certificates must be signed by; required')
    .addHelpText('after', SERVICE_HELP)
    .action(async (f: { listen?: string[]; secretFile?: string; tlsCert?: string; tlsKey?: string; tlsVerify?: string }) => {
      // The API (node:http and the routes) is loaded by this command alone.
      const { checkServiceOptions, runService } = await import('../api/service.js');
      checkServiceOptions(f); // refuse bad options before anything else
      await runService(getEngine(ctx), { listen: f.listen ?? [], secretFile: f.secretFile, tlsCert: f.tlsCert, tlsKey: f.tlsKey, tlsVerify: f.tlsVerify });
    });
  program
    .command('version')
    .description('show the ferry version')
    .action(() => out(`Version:      ${VERSION}\nBun Version:  ${bunVersion()}\nOS/Arch:      linux/${goArch()}\n`));
}

function toYaml(v: unknown, indent = ''): string {
  if (v === null || typeof v !== 'object') return `${JSON.stringify(v)}\n`;
  if (Array.isArray(v)) {
    if (!v.length) return '[]\n';
    return '\n' + v.map((x) => `${indent}- ${toYaml(x, indent + '  ').trimStart()}`).join('');
  }
  const entries = Object.entries(v as object);
  if (!entries.length) return '{}\n';
  return (
    (indent ? '\n' : '') +
    entries.map(([k, x]) => `${indent}${k}:${x !== null && typeof x === 'object' && Object.keys(x).length ? '' : ' '}${toYaml(x, indent + '  ')}`).join('')
  );
}
