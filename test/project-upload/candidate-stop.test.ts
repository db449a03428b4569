import t from 'tap';
import { cannotBeChosen } from '../../src/project-upload/candidate-stop.js';

const bound = 1000;
const slowLinks = 3;
const none = { bound, best: undefined, sure: undefined, slowLinks };

t.test('the bound unknown (the tar still being compressed): only a candidate ranked 0 can be a rival', async (t) => {
  const best = { cost: 0, vcdiffSize: 1 };
  t.notOk(cannotBeChosen({ fetches: 0, size: 10 * bound, counted: 10 * bound }, { ...none, bound: undefined, best }), 'neither twice the bound nor the best stop it');
  t.ok(cannotBeChosen({ fetches: 1, size: 1, counted: 1 }, { ...none, bound: undefined, sure: { cost: 0, vcdiffSize: 1 } }), 'its base costs more than the sure one');
});

t.test('past twice the re-base bound by its fast pass, with no rival at all, a candidate cannot be chosen', async (t) => {
  t.ok(cannotBeChosen({ fetches: 0, size: bound + 1, counted: 2 * bound + 1 }, none));
  t.notOk(cannotBeChosen({ fetches: 0, size: bound + 1, counted: 2 * bound }, none), 'at twice the bound it still may be');
  t.notOk(cannotBeChosen({ fetches: 0, size: bound, counted: 2 * bound + 1 }, none), 'its raw VCDIFF under the bound: it may yet rank 0');
});

t.test('under the bound, a candidate is weighed against the sure one (ranked 0) by its fetches, never against the best', async (t) => {
  const sure = { cost: 500, vcdiffSize: 100 };
  t.ok(cannotBeChosen({ fetches: 501, size: 0, counted: 0 }, { ...none, sure }), 'its base alone costs more: not started');
  t.notOk(cannotBeChosen({ fetches: 500, size: 100, counted: 100 }, { ...none, sure }), 'the same cost, a VCDIFF no larger so far');
  t.ok(cannotBeChosen({ fetches: 500, size: 101, counted: 0 }, { ...none, sure }), 'the same cost, a larger VCDIFF already');
  t.notOk(cannotBeChosen({ fetches: 1, size: bound, counted: bound }, { ...none, best: { cost: 0, vcdiffSize: 1 } }), 'a best with a smaller cost does not stop it');
});

t.test('past the bound, a candidate costs at least its fetches plus its fast pass over each slow link: weighed against the best', async (t) => {
  const best = { cost: 3 * 400 + 10, vcdiffSize: bound + 50 };
  const past = { size: bound + 1, counted: 400 };
  t.notOk(cannotBeChosen({ fetches: 10, ...past }, { ...none, best }), 'the same cost, a VCDIFF smaller so far');
  t.ok(cannotBeChosen({ fetches: 11, ...past }, { ...none, best }), 'a byte more than the best');
  t.ok(cannotBeChosen({ fetches: 10, ...past, size: bound + 51 }, { ...none, best }), 'the same cost, a larger VCDIFF');
  t.notOk(cannotBeChosen({ fetches: 0, ...past }, { ...none, sure: { cost: 0, vcdiffSize: 1 } }), 'the sure one is no rival past the bound');
});
