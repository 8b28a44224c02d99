import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forgettingVerdict, type ForgettingRow } from './demo-forgetting.js';

const row = (mode: string, old: number | null, neu: number | null, all: number | null, bodyChanged = true): ForgettingRow =>
  ({ mode, bodyChanged, oldTaskAccuracy: old, newTaskAccuracy: neu, allDigitsAccuracy: all, seconds: 1 });

const rows = (plainOld: number, lwfOld: number, plainChanged = true, frozenChanged = false) => [
  row('frozen body, old head kept', 0.9977, 0.9881, null, frozenChanged),
  row('full fine-tune', plainOld, 0.9905, null, plainChanged),
  row('fine-tune with LwF', lwfOld, 0.9903, null),
  row('extend, no replay', 0, 0.9661, 0.4696),
  row('extend, replay 20/class', 0.9432, 0.9677, 0.9551),
];

test('the forgetting words follow the figures: forgetting only where the old head dropped, LwF against plain fine-tuning either way', () => {
  let w = forgettingVerdict(rows(0.9922, 0.9955), 0.9977).join('\n');
  assert.match(w, /old head keeps exactly its old accuracy/);
  assert.match(w, /drops from 99\.77% to 99\.22% \(0\.55 points\): forgetting/);
  assert.match(w, /0\.33 points more of the old task than plain fine-tuning/);
  assert.match(w, /95\.51% on all ten digits \(target 95%: met\), against 46\.96% without replay/);
  // The case the issue saw: the fine-tune row equal to the frozen one is not called forgetting.
  w = forgettingVerdict(rows(0.9977, 0.9970), 0.9977).join('\n');
  assert.doesNotMatch(w, /forgetting\./);
  assert.match(w, /the old head stays at 99\.77% \(from 99\.77%\): little forgetting in this run/);
  assert.match(w, /0\.07 points less of the old task than plain fine-tuning: here distillation did not help/);
  w = forgettingVerdict(rows(0.9977, 0.9970, false), 0.9977).join('\n');
  assert.match(w, /the body did not change .* so this row shows no fine-tuning/);
  w = forgettingVerdict(rows(0.99, 0.99, true, true), 0.9977).join('\n');
  assert.match(w, /Frozen body: its weights changed/);
  assert.match(w, /as much of the old task as plain fine-tuning/);
});
