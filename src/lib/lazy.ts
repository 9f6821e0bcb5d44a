/**
 * Modules that only some commands use, loaded on their first use: every module a command
 * loads at start-up costs each `ferry` run its share (http, https, tls and zlib together ~3 ms of
 * a command that needs none of them; crypto and net ~0.5 ms more). Types come from
 * `import type`, which loads nothing.
 */
import type * as Crypto from 'node:crypto';
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import type * as Net from 'node:net';
import type * as Tls from 'node:tls';
import type * as Zlib from 'node:zlib';
import type Protobuf from 'protobufjs';
import type ProtobufMinimal from 'protobufjs/minimal.js';
import type TarStream from 'tar-stream';

function once<T>(load: () => T): () => T {
  let v: T | undefined;
  return () => (v ??= load());
}

/* eslint-disable @typescript-eslint/no-require-imports */
export const zlib = once(() => require('node:zlib') as typeof Zlib);
export const tls = once(() => require('node:tls') as typeof Tls);
export const http = once(() => require('node:http') as typeof Http);
export const https = once(() => require('node:https') as typeof Https);
export const net = once(() => require('node:net') as typeof Net);
export const crypto = once(() => require('node:crypto') as typeof Crypto);
/** node:crypto's randomBytes and createHash, loading the module on the first call. */
export const randomBytes = (size: number): Buffer => crypto().randomBytes(size);
export const createHash = (algorithm: string): Crypto.Hash => crypto().createHash(algorithm);
/** protobufjs (its reflection, for CRIU's images) and its minimal part (the Reader alone). */
export const protobufjs = once(() => require('protobufjs') as typeof Protobuf);
export const protobufMinimal = once(() => require('protobufjs/minimal.js') as typeof ProtobufMinimal);
/** tar-stream (with streamx, its own streams): checkpoint archives only, Ferry's and Podman's. */
export const tarStream = once(() => require('tar-stream') as typeof TarStream);
