// spread's command line spells long flags with one dash; commander wants two.

/** spread's (and fleetcache's) flags that take no value. */
const BOOLEAN = /^--?(vv|abend|reuse|resend|discard|restore|list|order|debug|shell|shell-before|shell-after|gc)=(.*)$/;
/** What Go's flag package takes as a boolean flag's value (strconv.ParseBool). */
const TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/**
 * spread's single-dash long flags (-seed=1, -vv, -artifacts DIR) as commander's double-dash ones;
 * a boolean one given a value as Go's flag package takes it (-reuse=true, -abend=false) is
 * given, or left out.
 */
export function normaliseSpreadFlags(argv: string[]): string[] {
  return argv.flatMap((a) => {
    const bool = BOOLEAN.exec(a);
    if (bool && TRUE.has(bool[2]!)) return [`--${bool[1]!}`];
    if (bool && FALSE.has(bool[2]!)) return [];
    return [/^-(seed|artifacts|vv|fleet|data|repeat|abend|pass|reuse|resend|discard|restore|list|order|debug|shell|shell-before|shell-after|reuse-pid|gc)(=.*)?$/.test(a) ? `-${a}` : a];
  });
}
