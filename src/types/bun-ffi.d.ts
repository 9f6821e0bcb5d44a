// The part of Bun's `bun:ffi` that Ferry uses (src/lib/libc.ts, src/lib/isal.ts).
declare module 'bun:ffi' {
  export const FFIType: { cstring: number; u32: number; i32: number; ptr: number; u64: number; i64: number; void: number };
  /** The address of a buffer's first byte, for a `ptr` argument or a pointer stored in a struct. */
  export function ptr(view: ArrayBufferView): number;
  export function dlopen<S extends Record<string, { args: number[]; returns: number }>>(
    path: string,
    symbols: S,
  ): { symbols: { [K in keyof S]: (...args: unknown[]) => number | bigint }; close(): void };
}
