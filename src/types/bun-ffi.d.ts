// The part of Bun's `bun:ffi` that Ferry uses (src/lib/fifo.ts makeFifo).
declare module 'bun:ffi' {
  export const FFIType: { cstring: number; u32: number; i32: number; ptr: number; u64: number; i64: number };
  export function dlopen<S extends Record<string, { args: number[]; returns: number }>>(
    path: string,
    symbols: S,
  ): { symbols: { [K in keyof S]: (...args: unknown[]) => number | bigint }; close(): void };
}
