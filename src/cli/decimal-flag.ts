// Numbers on fleetcache's own command line are written as people write them: decimal
// digits. Number() also took `1e1`, `0x2`, `0b11`, ` 3 ` and `3.0`, so a mistyped value ran
// as some other number. (spread's -seed and -repeat are read as Go reads them: run.ts;
// tooltool's purge -s as Python's float() reads it: python-float.ts.)

/** `text` as a whole number when it is plain decimal digits only (a safe integer), else undefined. */
export function decimalWhole(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

