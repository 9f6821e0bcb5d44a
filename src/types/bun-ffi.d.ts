// The part of Bun's `bun:ffi` that Ferry uses (src/lib/libc.ts).
declare module 'bun:ffi' {
  export const FFIType: { cstring: number; u32: number; i32: number; ptr: number; u64: number; i64: number };
  export function dlopen<S extends Record<string, { args: number[]; returns: number }>>(
    path: string,
    symbols: S,
  ): { symbols: { [K in keyof S]: (...args: unknown[]) => number | bigint }; close(): void };
  /** Reads memory at a pointer (a number returned by a `ptr` symbol). */
  export const read: { i32(ptr: number | bigint, offset?: number): number };
}
