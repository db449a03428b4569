// Options given several times (--include a --include b): commander gathers them with a
// parser, and would print the empty list as their default in --help.
import { Option } from 'commander';

/** A repeatable option gathering its values; `shown` is what --help says its default is. */
export function repeatable(flags: string, description: string, shown: string): Option {
  return new Option(flags, description).argParser((value: string, previous: string[]) => [...previous, value]).default([], shown);
}
