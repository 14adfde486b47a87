/**
 * The kernel-style litmus diagram of a controlled execution: one column per CPU (actor), the
 * racing accesses in the order they happened, with their race-point labels, the words they touched
 * and the values, and the store-buffer drains marked in the column of the CPU whose store became
 * visible — the picture the scenario READMEs draw by hand, drawn from the execution itself.
 */
import { describeAddr, type Layout } from '../mem/layout.js';
import { StepKind, type StepRecord } from '../mem/controlled.js';

/** Labels that pace rounds or are emulator bookkeeping, left out of a diagram. */
const NOISE = /^(round:|runtime:|emu:|barrier:|test:)/;

const hex = (v: number) => (v >>> 0 < 10 ? String(v >>> 0) : `0x${(v >>> 0).toString(16)}`);

/** One cell of the diagram. */
function cell(s: StepRecord, n: number, labels: ReadonlyMap<number, string>, L: Layout): string {
  const where = describeAddr(L, s.addr);
  if (s.entity >= n) return `  ⇣ [${where}] = ${hex(s.value)} visible`;
  const label = labels.get(s.label >>> 0) ?? `#${(s.label >>> 0).toString(16)}`;
  switch (s.kind) {
    case StepKind.READ:
      return `${label}: r [${where}] → ${hex(s.value)}`;
    case StepKind.WRITE:
      return `${label}: w [${where}] = ${hex(s.value)} (buffered)`;
    case StepKind.RMW:
      return `${label}: locked [${where}] was ${hex(s.value)}`;
    case StepKind.FENCE:
      return `${label}: smp_mb()`;
    case StepKind.WAIT:
      return `${label}: wait [${where}]${s.value === 2 ? ' (timed out)' : ''}`;
    case StepKind.NOTIFY:
      return `${label}: wake [${where}]`;
    default:
      return label;
  }
}

/**
 * Render the last `rows` interesting steps of an execution's tail as CPU columns.
 * `roles` names the actors (entity i, and drains n + i in actor i's column).
 * @emulator
 */
export function litmusDiagram(tail: readonly StepRecord[], roles: readonly string[], labels: ReadonlyMap<number, string>, L: Layout, rows = 40): string {
  const n = roles.length;
  const name = (s: StepRecord) => (s.entity >= n ? '' : (labels.get(s.label >>> 0) ?? ''));
  // Up to the end of the last round: role 0 runs the checkers after it passes the round's end
  // barrier, so cut at its last 'round:end' step (the checker's reads come after).
  let end = tail.length;
  for (let i = tail.length - 1; i >= 0; i--) {
    if (tail[i]!.entity === 0 && name(tail[i]!) === 'round:end') {
      end = i + 1;
      break;
    }
  }
  const shown = tail.slice(0, end).filter((s) => s.entity >= n || !NOISE.test(name(s)));
  // A polling loop is one row: repeats of the same access with the same result collapse into "×N".
  const cells: { col: number; text: string; times: number }[] = [];
  for (const s of shown) {
    const col = s.entity >= n ? s.entity - n : s.entity;
    const text = cell(s, n, labels, L);
    const prev = cells[cells.length - 1];
    if (prev && prev.col === col && prev.text === text) prev.times++;
    else cells.push({ col, text, times: 1 });
  }
  for (const c of cells) if (c.times > 1) c.text += ` ×${c.times}`;
  const width = roles.map((r, i) => Math.min(64, Math.max(r.length + 6, ...cells.filter((c) => c.col === i).map((c) => c.text.length))));
  const pad = (s: string, w: number) => (s.length > w ? s.slice(0, w - 1) + '…' : s + ' '.repeat(w - s.length));
  const head = roles.map((r, i) => pad(`CPU${i} ${r}`, width[i]!)).join(' | ');
  const rule = width.map((w) => '-'.repeat(w)).join('-+-');
  const body = cells.slice(-rows).map((c) => roles.map((_, i) => pad(i === c.col ? c.text : '', width[i]!)).join(' | '));
  return [head, rule, ...body].join('\n');
}
