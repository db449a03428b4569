// spread's command line spells long flags with one dash; commander wants two.

/** spread's single-dash long flags (-seed=1, -vv, -artifacts DIR) as commander's double-dash ones. */
export function normaliseSpreadFlags(argv: string[]): string[] {
  return argv.map((a) => (/^-(seed|artifacts|vv|fleet|data|repeat|abend|pass|reuse|resend|discard|restore|list|order|debug|shell|shell-before|shell-after|reuse-pid|gc)(=.*)?$/.test(a) ? `-${a}` : a));
}
