// The naming rules `promtool check metrics` applies to a Prometheus text exposition (its
// lint, client_golang's promlint): each family has HELP and TYPE, a snake_case name, and
// `_total` on every counter and on nothing else. promtool itself is not installed here.

/** One problem per line, "<name>: <rule>", as promtool reports them; none for a clean text. */
export function lintMetricNames(text: string): string[] {
  const types = new Map<string, string>();
  const helped = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^# (HELP|TYPE) (\S+)(?: (\S+))?/.exec(line);
    if (!m) continue;
    if (m[1] === 'HELP') helped.add(m[2]!);
    else types.set(m[2]!, m[3] ?? '');
  }
  const problems: string[] = [];
  for (const [name, type] of types) {
    if (!helped.has(name)) problems.push(`${name}: no help text`);
    if (!/^[a-z_][a-z0-9_]*$/.test(name)) problems.push(`${name}: metric names should be written in snake_case`);
    if (type === 'counter' && !name.endsWith('_total')) problems.push(`${name}: counter metrics should have "_total" suffix`);
    if (type !== 'counter' && name.endsWith('_total')) problems.push(`${name}: non-counter metrics should not have "_total" suffix`);
  }
  return problems;
}
