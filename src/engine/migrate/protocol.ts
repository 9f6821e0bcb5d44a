/**
 * The migration protocol's messages, one type each, and one parser per direction that checks
 * every message where it arrives (the channel's readers apply them: channel.ts).
 *
 *   source -> destination (frames)      destination -> source (JSON lines)
 *     hello      what the container needs   ready          checked, nothing frozen yet
 *     image      --with-image: its record   error          refused or failed: why
 *     pre-dump   round K's archive follows  image-stored   (after image)
 *     archive    the checkpoint follows     pre-dump-stored  round K stored aside
 *     commit     keep it                    progress       memory received so far (a notice)
 *     abort      drop what you made         restored       running there (downtime ends)
 *     bye        done                       committed      kept
 *                                           pages-done     (lazy) every page was served
 *
 * `restored` is sent the moment conmon reports the container running there, before the restore
 * has recorded it: should recording fail, `commit` is answered with `error` (nothing kept there)
 * instead of `committed`, and the source rolls back as before a commit.
 *
 * A message that is not what its type says (a field missing or of the wrong type, a port out
 * of 1024-65535, a name that is no valid container name, a round below 1, an unknown type)
 * becomes a FerryError ('EINVAL') saying so in one line; the engine never reads a field that
 * was not checked here. Fields a message does not know are dropped.
 */
import { net as loadNet } from '../../lib/lazy.js';
import { FerryError } from '../../lib/errors.js';
import { validName } from '../../lib/ids.js';
import { imageRecordProblem, type ImageRecord } from '../../drivers/storage/images.js';

// ------------------------------------------------------------------------------ constants

/** How long either end waits for the other's next message (a dump or a restore may be under way). */
export const REPLY_TIMEOUT_MS = 120_000;
/** How long the source waits for `committed`, and the destination for `commit` after `restored`. */
export const COMMIT_TIMEOUT_MS = 30_000;
/** How long the destination waits for `bye` once it has committed. */
export const BYE_TIMEOUT_MS = 5000;
/** After the archive is in, how long a stop-and-copy's memory may still take to land. */
export const PAGE_SERVER_FINISH_MS = 60_000;
/** The header kind of a pre-copy round's archive (parents/N only). */
export const PRE_DUMP_KIND = 'ferry-pre-dump';

// ------------------------------------------------------------------------------ source -> destination

/** What the container needs, for the destination to check before anything is frozen. */
export interface Hello {
  type: 'hello';
  name: string;
  imageId: string;
  imageName: string;
  /** The bridge network it is on (absent: no network of its own). */
  network?: string;
  /** Its address on that network, asked for again there. */
  ip?: string;
  criuVersion?: string;
  arch: string;
  lazy: boolean;
  /** (lazy, ssh) The destination's loopback port of the `ssh -R` tunnel to the source's page server. */
  lazyPort?: number;
  /** Stop-and-copy: the destination runs a page server that the source's dump sends memory to. */
  pageServer: boolean;
  /** (page server, ssh) The loopback port the `ssh -L` tunnel leads to, where the page server listens. */
  pageServerPort?: number;
  withImage: boolean;
  /** (--with-image) The image's layers (hex of their diff IDs), for the destination to say which it has. */
  imageLayers?: string[];
  /** Named volumes that move with it. */
  volumes: string[];
}

/** --with-image: the image's record; its rootfs follows as an archive. */
export interface ImageOffer {
  type: 'image';
  image: ImageRecord;
}

/** Pre-copy round `round`'s archive follows. */
export interface PreDump {
  type: 'pre-dump';
  round: number;
}

export type SourceMessage = Hello | ImageOffer | PreDump | { type: 'archive' } | { type: 'commit' } | { type: 'abort' } | { type: 'bye' };

// ------------------------------------------------------------------------------ destination -> source

export interface Ready {
  type: 'ready';
  /** The destination lacks the image: the source sends it first (--with-image). */
  needImage: boolean;
  /**
   * With needImage: the image's layers (hex of their diff IDs) the destination already has,
   * which the source leaves out (absent from older destinations: everything is sent).
   */
  haveLayers?: string[];
}

export interface ErrorReply {
  type: 'error';
  message: string;
}

export interface PreDumpStored {
  type: 'pre-dump-stored';
  round: number;
}

/** A notice while a stop-and-copy dump runs: the memory the page server has received. Never a reply. */
export interface PageProgress {
  type: 'progress';
  pageBytes: number;
}

export interface Restored {
  type: 'restored';
  /** The container's ID there. */
  id: string;
  /** The memory its page server received (0 unless stop-and-copy). */
  pageBytes: number;
}

export type Reply = Ready | ErrorReply | { type: 'image-stored' } | PreDumpStored | PageProgress | Restored | { type: 'committed' } | { type: 'pages-done' };

// ------------------------------------------------------------------------------ parsers

/** What the source sent, checked: the destination's parser (FrameReader). */
export function parseSourceMessage(json: unknown): SourceMessage {
  const f = new Fields(json, 'from the source');
  const type = f.type();
  switch (type) {
    case 'hello': {
      const m: Hello = {
        type,
        name: f.name('name', 'container'),
        imageId: f.imageId('imageId'),
        imageName: f.string('imageName'),
        network: f.optional('network', () => f.name('network', 'network')),
        ip: f.optional('ip', () => f.ip('ip')),
        criuVersion: f.optional('criuVersion', () => f.string('criuVersion')),
        arch: f.string('arch'),
        lazy: f.bool('lazy'),
        lazyPort: f.port('lazyPort', 'lazy pages port'),
        pageServer: f.bool('pageServer'),
        pageServerPort: f.port('pageServerPort', 'page server port'),
        withImage: f.bool('withImage'),
        imageLayers: f.optional('imageLayers', () => f.layerIds('imageLayers')),
        volumes: f.names('volumes', 'volume'),
      };
      if (m.lazy && m.pageServer) throw f.bad('it asks for both lazy pages and a page server');
      return m;
    }
    case 'image':
      return { type, image: f.image('image') };
    case 'pre-dump':
      return { type, round: f.round('round') };
    case 'archive':
    case 'commit':
    case 'abort':
    case 'bye':
      return { type };
    default:
      throw f.unknown();
  }
}

/** What the destination replied, checked: the source's parser (LineReader). */
export function parseReply(json: unknown): Reply {
  const f = new Fields(json, 'from the destination');
  const type = f.type();
  switch (type) {
    case 'ready':
      return { type, needImage: f.bool('needImage'), haveLayers: f.optional('haveLayers', () => f.layerIds('haveLayers')) };
    case 'error':
      return { type, message: f.string('message') };
    case 'pre-dump-stored':
      return { type, round: f.round('round') };
    case 'progress':
      return { type, pageBytes: f.count('pageBytes') };
    case 'restored':
      return { type, id: f.match('id', /^[0-9a-f]{64}$/, 'a container ID'), pageBytes: f.count('pageBytes') };
    case 'image-stored':
    case 'committed':
    case 'pages-done':
      return { type };
    default:
      throw f.unknown();
  }
}

/** A TCP port a tunnel end may listen on: not a privileged one. */
export function isTunnelPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1024 && n <= 65535;
}

/** A value as a message would show it: JSON, cut short. */
function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/** Reads a message's fields, each checked; every refusal names the message and the field. */
class Fields {
  private readonly o: Record<string, unknown>;
  private kind = 'message';

  constructor(
    json: unknown,
    private readonly from: string,
  ) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FerryError('EINVAL', `bad message ${from}: ${shown(json)} is not a JSON object`);
    this.o = json as Record<string, unknown>;
  }

  bad(why: string): FerryError {
    return new FerryError('EINVAL', `bad ${this.kind} ${this.from}: ${why}`);
  }

  unknown(): FerryError {
    return new FerryError('EINVAL', `unknown message type ${shown(this.o.type)} ${this.from}`);
  }

  type(): string {
    const t = this.o.type;
    if (typeof t !== 'string' || !t) throw this.bad('it has no type');
    this.kind = `${shown(t)} message`;
    return t;
  }

  private field(k: string, what: string, ok: (v: unknown) => boolean): unknown {
    const v = this.o[k];
    if (v === undefined) throw this.bad(`${k} is missing`);
    if (!ok(v)) throw this.bad(`${k} ${shown(v)} is not ${what}`);
    return v;
  }

  /** An optional field: undefined (or null) when absent, else what read() makes of it. */
  optional<T>(k: string, read: () => T): T | undefined {
    return this.o[k] === undefined || this.o[k] === null ? undefined : read();
  }

  string(k: string): string {
    return this.field(k, 'a string', (v) => typeof v === 'string') as string;
  }

  bool(k: string): boolean {
    return this.field(k, 'true or false', (v) => typeof v === 'boolean') as boolean;
  }

  match(k: string, re: RegExp, what: string): string {
    return this.field(k, what, (v) => typeof v === 'string' && re.test(v)) as string;
  }

  /** A non-negative integer (a byte count). */
  count(k: string): number {
    return this.field(k, 'a count', (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) as number;
  }

  /** A pre-copy round: 1, 2, ... */
  round(k: string): number {
    return this.field(k, 'a round number (1, 2, ...)', (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1) as number;
  }

  /** A container, network or volume name. */
  name(k: string, of: string): string {
    return this.field(k, `a valid ${of} name`, (v) => typeof v === 'string' && validName(v)) as string;
  }

  names(k: string, of: string): string[] {
    const v = this.field(k, 'a list', Array.isArray) as unknown[];
    for (const n of v) if (typeof n !== 'string' || !validName(n)) throw this.bad(`${k}: ${shown(n)} is not a valid ${of} name`);
    return v as string[];
  }

  imageId(k: string): string {
    return this.match(k, /^[0-9a-f]{64}$/, 'an image ID');
  }

  /** Layer IDs (the hex of diff IDs), at most as many as an image can have. */
  layerIds(k: string): string[] {
    const v = this.field(k, 'a list', (x) => Array.isArray(x) && x.length <= 1000) as unknown[];
    for (const id of v) if (typeof id !== 'string' || !/^[0-9a-f]{64}$/.test(id)) throw this.bad(`${k}: ${shown(id)} is not a layer ID`);
    return v as string[];
  }

  ip(k: string): string {
    return this.field(k, 'an IP address', (v) => typeof v === 'string' && loadNet().isIP(v) !== 0) as string;
  }

  /**
   * An optional tunnel port (1024-65535). Absent, or 0 as older sources sent it, when the
   * receiver picks its own (a ferry service tunnels the memory over its own connection).
   */
  port(k: string, what: string): number | undefined {
    const v = this.o[k];
    if (v === undefined || v === null || v === 0) return undefined;
    if (!isTunnelPort(v)) throw this.bad(`invalid ${what} ${shown(v)} (use 1024-65535)`);
    return v;
  }

  /** An image record as `ferry images` keeps it. */
  image(k: string): ImageRecord {
    const v = this.field(k, 'an image record', (x) => typeof x === 'object' && x !== null && !Array.isArray(x)) as Record<string, unknown>;
    const problem = imageRecordProblem(v);
    if (problem) throw this.bad(`${k}.${problem} is missing or malformed`);
    const r = v as unknown as ImageRecord;
    return {
      Id: r.Id,
      Digest: r.Digest,
      Names: r.Names,
      RepoDigests: r.RepoDigests,
      Created: r.Created,
      Size: r.Size,
      Layers: r.Layers,
      Config: r.Config,
      Architecture: r.Architecture,
      Os: r.Os,
      ManifestType: typeof r.ManifestType === 'string' ? r.ManifestType : '',
    };
  }
}
