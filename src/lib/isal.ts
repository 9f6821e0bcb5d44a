/**
 * gzip inflate by ISA-L (Debian's libisal2) through Bun's FFI: about twice zlib's speed, in the
 * calling thread (layers are inflated in worker threads: see storage/unpack-worker.ts).
 * The inflate state is a C struct the caller allocates; its layout is libisal 2.x's (offsets from
 * igzip_lib.h). A self-test on load inflates a small known stream: where the library is missing or
 * its layout differs, haveIsal() is false and callers keep to zlib.
 */
const STATE_SIZE = 87368; // sizeof(struct inflate_state), libisal 2.30
const SLACK = 16384; // room in case a later 2.x grows the struct's tail
const OFF_NEXT_OUT = 0;
const OFF_AVAIL_OUT = 8;
const OFF_NEXT_IN = 16;
const OFF_AVAIL_IN = 32;
const OFF_BLOCK_STATE = 21160;
const OFF_CRC_FLAG = 21172;
const ISAL_GZIP = 1;
const ISAL_BLOCK_FINISH = 5;
const OUT_CHUNK = 1 << 20;
const MIN_ROOM = 128 << 10;

const ERRORS: Record<number, string> = {
  [-1]: 'invalid deflate block',
  [-2]: 'invalid deflate symbol',
  [-3]: 'invalid lookback distance',
  [-4]: 'invalid gzip header',
  [-5]: 'unsupported compression method',
  [-6]: 'wrong checksum',
};

interface Isal {
  init(state: Uint8Array): void;
  reset(state: Uint8Array): void;
  inflate(state: Uint8Array): number;
  ptr(b: Uint8Array): number;
}

let isal: Isal | null | undefined;

function load(): Isal | null {
  if (isal !== undefined) return isal;
  isal = null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ffi = require('bun:ffi') as typeof import('bun:ffi');
    const { ptr, i32, void: v } = ffi.FFIType;
    const lib = ffi.dlopen('libisal.so.2', {
      isal_inflate_init: { args: [ptr], returns: v },
      isal_inflate_reset: { args: [ptr], returns: v },
      isal_inflate: { args: [ptr], returns: i32 },
    });
    const candidate: Isal = {
      init: (s) => lib.symbols.isal_inflate_init(s),
      reset: (s) => lib.symbols.isal_inflate_reset(s),
      inflate: (s) => Number(lib.symbols.isal_inflate(s)),
      ptr: (b) => Number(ffi.ptr(b)),
    };
    isal = candidate;
    if (!selfTest()) isal = null;
  } catch {
    isal = null;
  }
  return isal;
}

// gzip -c of "ferry\n" twice, as two members.
const SAMPLE = Buffer.from('1f8b08000000000000034b4b2d2aaae40200514ad6b6060000001f8b08000000000000034b4b2d2aaae40200514ad6b606000000', 'hex');

function selfTest(): boolean {
  try {
    const out: Buffer[] = [];
    const g = new GzipInflater();
    g.push(SAMPLE.subarray(0, 7), (b) => out.push(Buffer.from(b)));
    g.push(SAMPLE.subarray(7), (b) => out.push(Buffer.from(b)));
    g.end();
    return Buffer.concat(out).toString() === 'ferry\nferry\n';
  } catch {
    return false;
  }
}

/** Whether ISA-L's inflate can be used in this process (FERRY_INFLATE=zlib: not, for tests and comparisons). */
export function haveIsal(): boolean {
  if (process.env.FERRY_INFLATE === 'zlib') return false;
  return load() !== null;
}

/** Why a gzip stream was refused (a plain Error: the caller says which stream). */
export class GzipError extends Error {}

/**
 * A streaming gzip decoder: push() input as it comes, each output chunk (a fresh buffer, at
 * most 1 MiB, never written again) goes to `emit`; end() throws when the stream stopped short. Several members in a
 * row are one stream (as gzip(1) reads them); bytes after the last member that do not begin
 * another are ignored, as gzip(1) and zlib do.
 */
export class GzipInflater {
  private readonly lib: Isal;
  private readonly state = new Uint8Array(STATE_SIZE + SLACK);
  private readonly dv = new DataView(this.state.buffer);
  /** Inside a member (false between members and at the start). */
  private inMember = false;
  private trailing = false;
  private started = false;
  private buf = Buffer.alloc(0);
  private bufPtr = 0;
  private pos = 0;
  /** Bytes put out so far. */
  out = 0;

  constructor() {
    const l = isal ?? load();
    if (!l) throw new Error('libisal is not available');
    this.lib = l;
  }

  private begin(): void {
    if (this.started) this.lib.reset(this.state);
    else this.lib.init(this.state);
    this.started = true;
    this.dv.setUint32(OFF_CRC_FLAG, ISAL_GZIP, true);
    this.inMember = true;
  }

  push(input: Uint8Array, emit: (b: Buffer) => void): void {
    if (this.trailing || input.length === 0) return;
    const dv = this.dv;
    let inPtr = this.lib.ptr(input);
    let avail = input.length;
    while (avail > 0 || this.inMember) {
      if (!this.inMember) {
        // A new member must start with gzip's magic; anything else is trailing garbage.
        if (input[input.length - avail] !== 0x1f) {
          if (!this.started) throw new GzipError('it is not gzip data');
          this.trailing = true;
          return;
        }
        this.begin();
      }
      // Output goes into one buffer at a moving offset: each emitted piece stays untouched.
      if (this.buf.length - this.pos < MIN_ROOM) {
        this.buf = Buffer.allocUnsafe(OUT_CHUNK);
        this.bufPtr = this.lib.ptr(this.buf);
        this.pos = 0;
      }
      const room = this.buf.length - this.pos;
      dv.setBigUint64(OFF_NEXT_IN, BigInt(inPtr), true);
      dv.setUint32(OFF_AVAIL_IN, avail, true);
      dv.setBigUint64(OFF_NEXT_OUT, BigInt(this.bufPtr + this.pos), true);
      dv.setUint32(OFF_AVAIL_OUT, room, true);
      const rc = this.lib.inflate(this.state);
      if (rc < 0) throw new GzipError(`its gzip data is corrupt (${ERRORS[rc] ?? `error ${rc}`})`);
      const left = dv.getUint32(OFF_AVAIL_IN, true);
      inPtr += avail - left;
      avail = left;
      const produced = room - dv.getUint32(OFF_AVAIL_OUT, true);
      this.out += produced;
      if (produced) emit(this.buf.subarray(this.pos, this.pos + produced));
      this.pos += produced;
      if (dv.getUint32(OFF_BLOCK_STATE, true) === ISAL_BLOCK_FINISH) {
        this.inMember = false;
        continue;
      }
      if (avail === 0 && produced < room) return; // needs more input
    }
  }

  /** The input is over: throws unless the last member was complete. */
  end(): void {
    if (!this.started) throw new GzipError('its gzip data is empty');
    if (this.inMember) throw new GzipError('its gzip data is cut short');
  }
}
