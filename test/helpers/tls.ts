// Throwaway TLS material for tests: a CA, a server certificate for 127.0.0.1, and client
// certificates with a chosen CN, made with the openssl command line into a directory.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface Pem {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function load(dir: string, name: string): Pem {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), certFile, keyFile };
}

/** A self-signed CA named `name` in `dir`. */
export function makeCa(dir: string, name = 'ca'): Pem {
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`]);
  return load(dir, name);
}

/** A certificate signed by `ca`: CN `cn`, and for servers the SAN IP 127.0.0.1. */
export function makeCert(dir: string, ca: Pem, name: string, cn: string, kind: 'server' | 'client'): Pem {
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`,
    '-keyout', `${name}.key`, '-out', `${name}.csr`]);
  const ext = path.join(dir, `${name}.ext`);
  writeFileSync(ext, kind === 'server'
    ? 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
    : 'extendedKeyUsage=clientAuth\n');
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial',
    '-days', '2', '-extfile', ext, '-out', `${name}.crt`]);
  return load(dir, name);
}
