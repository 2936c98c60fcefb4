/**
 * The library's own description of its ABI structs, `fa_abi_layout()` (generated in
 * cuda/api/abi_layout.cpp from offsetof/sizeof), parsed. Tests pack raw structs from it
 * and check ffi/structs.ts's field table against it, so no offset is written by hand here.
 * @module
 */

import { ffi } from "../../ffi/library.ts";

/** One field as the library was compiled: offset and size in bytes. */
export interface LibraryField {
  offset: number;
  size: number;
}

/** One struct as the library was compiled: its size and fields in declaration order. */
export interface LibraryStruct {
  size: number;
  fields: Map<string, LibraryField>;
}

/** Parses the text of `fa_abi_layout()` ("struct NAME SIZE" / "field NAME OFFSET SIZE"). */
export function parseAbiLayout(text: string): Map<string, LibraryStruct> {
  const structs = new Map<string, LibraryStruct>();
  let current: LibraryStruct | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const [kind, name, ...numbers] = line.split(" ");
    const values = numbers.map(Number);
    if (kind === "struct" && values.length === 1) {
      current = { size: values[0], fields: new Map() };
      structs.set(name, current);
    } else if (kind === "field" && values.length === 2 && current !== undefined) {
      current.fields.set(name, { offset: values[0], size: values[1] });
    } else {
      throw new Error(`fa_abi_layout: cannot parse line "${line}"`);
    }
  }
  return structs;
}

let cached: Map<string, LibraryStruct> | undefined;

/** The loaded library's layout table (parsed once). */
export function libraryAbiLayout(): Map<string, LibraryStruct> {
  if (cached === undefined) {
    const pointer = ffi().fa_abi_layout?.() ?? null;
    if (pointer === null) throw new Error("fa_abi_layout returned null");
    cached = parseAbiLayout(Deno.UnsafePointerView.getCString(pointer));
  }
  return cached;
}

/** A struct of the library's table; throws for an unknown name. */
export function libraryStruct(name: string): LibraryStruct {
  const struct = libraryAbiLayout().get(name);
  if (struct === undefined) throw new Error(`fa_abi_layout: no struct ${name}`);
  return struct;
}

/** Offset of `field` in `struct` per the library's table; throws for an unknown field. */
export function libraryOffset(struct: string, field: string): number {
  const found = libraryStruct(struct).fields.get(field);
  if (found === undefined) throw new Error(`fa_abi_layout: ${struct} has no field ${field}`);
  return found.offset;
}
