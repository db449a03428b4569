// The CLI's commander Command: an unknown option that begins a real one is answered with
// that one. commander suggests by edit distance alone, which takes the shortest candidate
// over a longer one the option was cut from: `run --rep` was offered --help, not --repeat.
import { Command } from 'commander';

/** commander's own answer to an unknown option (not in its typings: a method of its parsing). */
const commanderUnknownOption = (Command.prototype as unknown as { unknownOption(this: Command, flag: string): void }).unknownOption;

export class FleetCommand extends Command {
  /** What allowUnknownOption() set: commander keeps it in an untyped field of its own. */
  #unknownAllowed = false;

  override createCommand(name?: string): Command {
    return new FleetCommand(name);
  }

  override allowUnknownOption(allowUnknown = true): this {
    this.#unknownAllowed = allowUnknown;
    return super.allowUnknownOption(allowUnknown);
  }

  /**
   * The long options this command takes: its own and, as commander looks them up, its parents'
   * (`assets fetch --cache-folder`) up to the program's, which go before the command only
   * (main.ts, enablePositionalOptions).
   */
  #longOptions(): string[] {
    const longs: string[] = [];
    for (let command: Command | null = this; command && (command === this || command.parent); command = command.parent) {
      for (const option of command.createHelp().visibleOptions(command)) if (option.long) longs.push(option.long);
    }
    return longs;
  }

  /** Called by commander's parsing with the option as given (`--rep`, `--rep=3`, spread's `-rep`). */
  unknownOption(flag: string): void {
    // taken as an argument, as commander's own would (it returns at once)
    if (this.#unknownAllowed) return;
    const begun = optionsBegunBy(flag, this.#longOptions());
    if (begun.length === 0) return commanderUnknownOption.call(this, flag);
    const suggestion = begun.length === 1 ? begun[0] : `one of ${begun.join(', ')}`;
    this.error(`error: unknown option '${flag}'\n(Did you mean ${suggestion}?)`, { code: 'commander.unknownOption' });
  }
}

/** The long options (`--repeat`) that `flag` (`--rep`, `--rep=3`, `-rep`) is the beginning of. */
function optionsBegunBy(flag: string, longs: readonly string[]): string[] {
  const word = /^--?([^=]{2,})/.exec(flag)?.[1];
  return word === undefined ? [] : [...new Set(longs.filter((long) => long.startsWith(`--${word}`)))].sort();
}
