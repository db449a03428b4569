// A YAML syntax error in a configuration names the file, the line and the column, and what
// is wrong: the parse used to run with prettyErrors off, which leaves err.linePos unset, so
// every such message read "c.yaml:?: …".
import t from 'tap';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { loadCacheConfig } from '../../src/cache/config-file.js';

const Any = Type.Object({}, { additionalProperties: true });

t.test('syntax errors carry file, line and column', async (t) => {
  const cases: [string, string, number, RegExp][] = [
    ['bad flow sequence', 'a: [1, 2\nb: 3\n', 2, /^c\.yaml:2:1: Flow sequence .* end with a \]$/],
    ['duplicate key', 'a: 1\nb: 2\na: 3\n', 3, /^c\.yaml:3:1: Map keys must be unique: "a"$/],
    ['tab indentation', 'a:\n\tb: 1\n', 2, /^c\.yaml:2:1: Tabs are not allowed as indentation$/],
    ['bad indent', 'a:\n  b: 1\n c: 2\n', 3, /^c\.yaml:3:1: All mapping items must start at the same column$/],
    ['nested duplicate key', 'top:\n  x: 1\n  x: 2\n', 3, /^c\.yaml:3:3: Map keys must be unique: "top\.x"$/],
    ['duplicate key in a list item', 'list:\n  - a: 1\n  - b: 1\n    b: 2\n', 4, /^c\.yaml:4:5: Map keys must be unique: "list\[1\]\.b"$/],
    ['duplicate key in a flow map', 'm: {a: 1, a: 2}\n', 1, /^c\.yaml:1:11: Map keys must be unique: "m\.a"$/],
  ];
  for (const [name, text, line, message] of cases) {
    t.throws(() => parseConfig(Any, text, 'c.yaml'), { code: 'FC_ERR_CONFIG', message, line, file: 'c.yaml' }, name);
  }
});

t.test('through loadConfigFile and a real config loader', async (t) => {
  const dir = t.testdir({ 'c.yaml': 'listen: 127.0.0.1:0\nlisten: 127.0.0.1:1\n' });
  const file = join(dir, 'c.yaml');
  t.throws(() => loadConfigFile(Any, file), { message: `${file}:2:1: Map keys must be unique: "listen"`, line: 2, field: 'listen' });
  t.throws(() => loadCacheConfig(file), { code: 'FC_ERR_CONFIG', message: /c\.yaml:2:1: Map keys must be unique/ });
});

t.test('an empty file, or one of comments only, is said to be empty at line 1, not at line "?"', async (t) => {
  const dir = t.testdir({ 'empty.yaml': '', 'comments.yaml': '\n# upstream: http://127.0.0.1:9\n' });
  for (const name of ['empty.yaml', 'comments.yaml']) {
    const file = join(dir, name);
    t.throws(() => loadCacheConfig(file), { code: 'FC_ERR_CONFIG', message: `${file}:1: (top level): missing required field "upstream" (the file is empty)`, line: 1 }, name);
  }
});
