/**
 * Campaigns: a seed × scenario × variant matrix of races, split into stable, disjoint shards
 * (`--shard I/N`, the idiom of Jest and Playwright) so that CI matrices and Kubernetes Indexed
 * Jobs spread one campaign over many machines, and merged back into one document.
 *
 * The matrix is the sorted list of cells (scenario id, then variant name, then seed); shard I of
 * N is every cell whose index in that list is I−1 modulo N (round robin, so every shard gets its
 * share of every scenario × variant, and a cell's shard depends only on the parameters). In
 * controlled mode every cell is a function of its parameters, so the merge of N shards equals
 * the unsharded campaign exactly (the same outcomes, replay tokens and trace digests; only
 * `elapsedMs` is the host's); `outcomeDigest` is a hash of everything but the times.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { badParam } from '../errors.js';
import { sharedPool } from '../runtime/pool.js';
import { writeFileAtomic } from '../util/output-file.js';
import { SCENARIOS } from './index.js';
import { findVariant, variantExpected, type ScenarioDef, type ScenarioVariant } from './define.js';
import { runControlledRace, type ControlledRaceResult } from './controlled.js';
import { resolveRace, runRace, type RaceResult } from './runner.js';

/** The `format` of a campaign document (JSON of `campaign --json`, `--out`, `merge --json`). */
export const CAMPAIGN_FORMAT = 'hvemu-campaign/1';

/** Free: real threads, the host interleaves; controlled: one access at a time, deterministic. */
export type CampaignMode = 'controlled' | 'free';

/** Controlled: schedules every cell expected to hold runs (default of `--schedules`). */
export const DEFAULT_SCHEDULES = 20;
/** Controlled: most schedules a cell expected to fail searches (default of `--buggy-schedules`). */
export const DEFAULT_BUGGY_SCHEDULES = 2000;
/** Controlled: rounds per execution (default of `--iterations` in controlled mode). */
export const DEFAULT_CONTROLLED_ROUNDS = 1;
/** Free: seconds each cell runs at most (default of `--seconds`). */
export const DEFAULT_FREE_SECONDS = 1;
/** Most seeds one campaign may name (`--seeds A..B`). */
export const MAX_SEEDS = 1_000_000;
/** Most shards (`--shard I/N`). */
export const MAX_SHARDS = 100_000;

/** What defines a campaign: two documents can be merged only when these are equal. */
export interface CampaignParams {
  mode: CampaignMode;
  /** Controlled: the search strategy (always `random`); free: null. */
  strategy: 'random' | null;
  /** Scenario ids, in catalogue order. */
  scenarios: string[];
  /** The variant selection, normalised: `['all']`, or sorted words (`buggy`, `fixed`, variant names). */
  variants: string[];
  /** Seeds, inclusive. */
  seeds: { from: number; to: number };
  /** Controlled: rounds per execution; free: the round budget of a cell (null with `seconds`). */
  iterations: number | null;
  /** Controlled: schedules of a cell expected to hold; free: null. */
  schedules: number | null;
  /** Controlled: most schedules of a cell expected to fail; free: null. */
  buggySchedules: number | null;
  /** Free: seconds per cell (null with `iterations`); controlled: null. */
  seconds: number | null;
}

/** Shard `index` (1-based) of `count`. */
export interface Shard {
  index: number;
  count: number;
}

/** A cell of the matrix. */
export interface CellKey {
  scenario: string;
  variant: string;
  seed: number;
}

/** What became of a cell: `fails` (an invariant broke, or a deadlock), `holds` (none in the budget), `error` (the run failed). */
export type CellOutcome = 'fails' | 'holds' | 'error';

/** One cell's result. Everything but `elapsedMs` is a function of the parameters in controlled mode. */
export interface CampaignCell extends CellKey {
  buggy: boolean;
  /** What the variant is expected to do (`variantExpected`). */
  expected: 'fails' | 'holds';
  outcome: CellOutcome;
  /** outcome === expected. */
  asExpected: boolean;
  /** The invariant that broke (null when none did). */
  invariant: string | null;
  /** Round of the first violation (in the failing execution, controlled). */
  round: number | null;
  detail: string | null;
  /** Rounds run (controlled: of the last execution). */
  iterations: number;
  /** Controlled: executions run; free: null. */
  schedules: number | null;
  /** Controlled: scheduling steps over all executions; free: null. */
  steps: number | null;
  /** Controlled: digest of the last execution's steps; free: null. */
  traceDigest: string | null;
  /** Controlled: the token of the failing execution (`hvemu replay TOKEN`); else null. */
  replay: string | null;
  failure: { code: string; message: string; actor?: string } | null;
  /** The command that runs this cell again (the same search in controlled mode). */
  rerun: string;
  /** Wall-clock time of the cell on this host. */
  elapsedMs: number;
}

/** Counts over a document's cells. */
export interface CampaignSummary {
  cells: number;
  asExpected: number;
  unexpected: number;
  fails: number;
  holds: number;
  errors: number;
}

/** The campaign document. */
export interface CampaignDoc {
  format: typeof CAMPAIGN_FORMAT;
  /** hvemu's version (parts made by different versions are not merged). */
  version: string;
  params: CampaignParams;
  /** The shard this document covers (null: the whole matrix). */
  shard: Shard | null;
  /** Cells of the whole matrix (all shards). */
  matrixCells: number;
  /** Stopped early (Ctrl-C): the document lacks cells and cannot be merged. */
  interrupted: boolean;
  /** Every cell as expected. */
  ok: boolean;
  summary: CampaignSummary;
  /** sha256 (first 16 hex digits) of the cells without their times: equal documents, equal digests. */
  outcomeDigest: string;
  /** In matrix order. */
  cells: CampaignCell[];
}

/** What a campaign is asked to do (the CLI's flags, parsed as far as numbers go). */
export interface CampaignOptions {
  /** `all` (default) or comma-separated ids. */
  scenarios?: string;
  /** `all` (default) or comma-separated words: `buggy`, `fixed`, or variant names. */
  variants?: string;
  /** `A..B` or `A`. */
  seeds: string;
  mode?: string;
  iterations?: number;
  schedules?: number;
  buggySchedules?: number;
  seconds?: number;
  /** `I/N`. */
  shard?: string;
}

/** A resolved campaign: its parameters, the whole matrix, and the cells of this shard. */
export interface CampaignPlan {
  params: CampaignParams;
  shard: Shard | null;
  matrix: CellKey[];
  cells: CellKey[];
  /** Most actors any cell runs at once (the pool is sized for it). */
  maxActors: number;
}

/** hvemu's version, from its package.json. */
export function hvemuVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Parse `--seeds A..B` (inclusive) or `A` (EMU_ERR_BAD_PARAM naming `--seeds`). */
export function parseSeeds(raw: string): { from: number; to: number } {
  const m = /^\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?$/.exec(raw);
  if (!m) throw badParam('--seeds', `"${raw}" is not a range A..B of seeds (e.g. 1..8) or one seed`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  for (const s of [from, to]) if (!Number.isSafeInteger(s) || s > 0xffffffff) throw badParam('--seeds', `${s} is not a seed (0..4294967295)`);
  if (to < from) throw badParam('--seeds', `"${raw}" is empty (${to} < ${from})`);
  if (to - from + 1 > MAX_SEEDS) throw badParam('--seeds', `"${raw}" names ${to - from + 1} seeds (at most ${MAX_SEEDS.toLocaleString('en-US')}; split the campaign)`);
  return { from, to };
}

/** Parse `--shard I/N` with 1 ≤ I ≤ N (EMU_ERR_BAD_PARAM naming `--shard`). */
export function parseShard(raw: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(raw);
  if (!m) throw badParam('--shard', `"${raw}" is not I/N (shard I of N, 1 ≤ I ≤ N, e.g. 1/4)`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > MAX_SHARDS) throw badParam('--shard', `"${raw}": N must be in 1..${MAX_SHARDS}`);
  if (index < 1 || index > count) throw badParam('--shard', `"${raw}": I must be in 1..${count} (shards are numbered from 1)`);
  return { index, count };
}

/** The comma-separated words of a list flag (empty words rejected). */
function words(param: string, raw: string): string[] {
  const ws = raw.split(',').map((w) => w.trim());
  if (ws.some((w) => w.length === 0)) throw badParam(param, `"${raw}" has an empty entry (a comma-separated list, or all)`);
  return ws;
}

/** Resolve `--scenarios` to ids in catalogue order. */
function resolveScenarios(raw: string | undefined): ScenarioDef[] {
  const ws = words('--scenarios', raw ?? 'all');
  if (ws.includes('all')) return [...SCENARIOS];
  for (const w of ws) if (!SCENARIOS.some((d) => d.id === w)) throw badParam('--scenarios', `unknown scenario "${w}" (known: all, ${SCENARIOS.map((d) => d.id).join(', ')})`);
  return SCENARIOS.filter((d) => ws.includes(d.id));
}

/** Normalise `--variants` and check every word selects something in the chosen scenarios. */
function resolveVariantWords(raw: string | undefined, defs: readonly ScenarioDef[]): string[] {
  const ws = words('--variants', raw ?? 'all');
  if (ws.includes('all')) return ['all'];
  const names = [...new Set(defs.flatMap((d) => d.variants.map((v) => v.name)))];
  for (const w of ws) {
    const ok = w === 'buggy' ? defs.some((d) => d.variants.some((v) => v.buggy)) : w === 'fixed' ? defs.some((d) => d.variants.some((v) => !v.buggy)) : names.includes(w);
    if (!ok) throw badParam('--variants', `"${w}" is not a variant of the selected scenarios (all, buggy, fixed, or a variant name: ${names.filter((n) => n !== 'buggy' && n !== 'fixed').join(', ')})`);
  }
  return [...new Set(ws)].sort();
}

/** Does the normalised selection pick variant `v`? */
function selects(sel: readonly string[], v: ScenarioVariant): boolean {
  return sel.includes('all') || sel.includes(v.name) || (v.buggy && sel.includes('buggy')) || (!v.buggy && sel.includes('fixed'));
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The whole matrix of `params`, sorted by scenario id, variant name, seed (EMU_ERR_BAD_PARAM for an unknown scenario). */
export function matrixCells(params: Pick<CampaignParams, 'scenarios' | 'variants' | 'seeds'>): CellKey[] {
  const pairs: { scenario: string; variant: string }[] = [];
  for (const id of params.scenarios) {
    const def = SCENARIOS.find((d) => d.id === id);
    if (!def) throw badParam('--scenarios', `unknown scenario "${id}"`);
    for (const v of def.variants) if (selects(params.variants, v)) pairs.push({ scenario: id, variant: v.name });
  }
  pairs.sort((a, b) => cmp(a.scenario, b.scenario) || cmp(a.variant, b.variant));
  const cells: CellKey[] = [];
  for (const p of pairs) for (let s = params.seeds.from; s <= params.seeds.to; s++) cells.push({ scenario: p.scenario, variant: p.variant, seed: s });
  return cells;
}

/** Shard `shard` of a sorted matrix: the cells whose index is shard.index − 1 modulo shard.count. */
export function shardCells<T>(matrix: readonly T[], shard: Shard | null): T[] {
  if (!shard) return [...matrix];
  return matrix.filter((_, i) => i % shard.count === shard.index - 1);
}

/** The key of a cell, for maps and messages: `scenario/variant#seed`. */
export function cellId(c: CellKey): string {
  return `${c.scenario}/${c.variant}#${c.seed}`;
}

/**
 * Resolve a campaign's options: every flag is checked here, before any work (EMU_ERR_BAD_PARAM
 * naming the flag: `--seeds`, `--shard`, `--scenarios`, `--variants`, `--mode`, ...).
 */
export function planCampaign(o: CampaignOptions): CampaignPlan {
  const mode = o.mode ?? 'controlled';
  if (mode !== 'controlled' && mode !== 'free') throw badParam('--mode', `"${mode}" is not one of controlled, free`);
  const defs = resolveScenarios(o.scenarios);
  const variants = resolveVariantWords(o.variants, defs);
  const seeds = parseSeeds(o.seeds);
  const shard = o.shard === undefined ? null : parseShard(o.shard);
  const int = (flag: string, v: number, lo: number, hi: number): number => {
    if (!Number.isSafeInteger(v) || v < lo || v > hi) throw badParam(flag, `${v} (must be an integer in ${lo}..${hi})`);
    return v;
  };
  let params: CampaignParams;
  if (mode === 'controlled') {
    if (o.seconds !== undefined) throw badParam('--seconds', 'is for --mode free (a controlled cell is bounded by --schedules and --buggy-schedules)');
    params = {
      mode,
      strategy: 'random',
      scenarios: defs.map((d) => d.id),
      variants,
      seeds,
      iterations: int('--iterations', o.iterations ?? DEFAULT_CONTROLLED_ROUNDS, 1, 1_000_000),
      schedules: int('--schedules', o.schedules ?? DEFAULT_SCHEDULES, 1, 1e9),
      buggySchedules: int('--buggy-schedules', o.buggySchedules ?? DEFAULT_BUGGY_SCHEDULES, 1, 1e9),
      seconds: null,
    };
  } else {
    for (const [flag, v] of [['--schedules', o.schedules], ['--buggy-schedules', o.buggySchedules]] as const) if (v !== undefined) throw badParam(flag, 'needs --mode controlled');
    if (o.iterations !== undefined && o.seconds !== undefined) throw badParam('--iterations', 'give either --iterations or --seconds, not both');
    const seconds = o.iterations === undefined ? (o.seconds ?? DEFAULT_FREE_SECONDS) : null;
    if (seconds !== null && (!Number.isFinite(seconds) || seconds < 0.01 || seconds > 86_400)) throw badParam('--seconds', `${seconds} (must be in 0.01..86400)`);
    params = { mode, strategy: null, scenarios: defs.map((d) => d.id), variants, seeds, iterations: o.iterations === undefined ? null : int('--iterations', o.iterations, 1, 1e12), schedules: null, buggySchedules: null, seconds };
  }
  const matrix = matrixCells(params);
  if (matrix.length === 0) throw badParam('--variants', `selects no variant of ${params.scenarios.join(', ')}`);
  let maxActors = 1;
  for (const id of params.scenarios) {
    const def = SCENARIOS.find((d) => d.id === id)!;
    for (const v of def.variants) {
      if (!selects(variants, v)) continue;
      const { params: p } = resolveRace(id, { variant: v.name, iterations: 1 });
      maxActors = Math.max(maxActors, def.roles(p).length);
    }
  }
  return { params, shard, matrix, cells: shardCells(matrix, shard), maxActors };
}

/** The variant of a cell (its scenario and variant must exist). */
function variantOf(c: CellKey): ScenarioVariant {
  return findVariant(SCENARIOS.find((d) => d.id === c.scenario)!, c.variant);
}

/** The schedules a controlled cell runs at most: `schedules` if it should hold, `buggySchedules` if it should fail. */
function scheduleBudget(p: CampaignParams, expected: 'fails' | 'holds'): number {
  return (expected === 'holds' ? p.schedules : p.buggySchedules) ?? DEFAULT_SCHEDULES;
}

/** The command that runs a cell again. */
function rerunCommand(p: CampaignParams, c: CellKey, expected: 'fails' | 'holds'): string {
  const base = `hvemu race ${c.scenario} --variant ${c.variant}`;
  if (p.mode === 'controlled') return `${base} --mode controlled --seed ${c.seed} --iterations ${p.iterations} --schedules ${scheduleBudget(p, expected)}`;
  return `${base} --seed ${c.seed} ${p.iterations !== null ? `--iterations ${p.iterations}` : `--seconds ${p.seconds}`}`;
}

/** A cell's result from its race (free or controlled). */
export function cellFromRace(p: CampaignParams, c: CellKey, r: RaceResult | ControlledRaceResult): CampaignCell {
  const v = variantOf(c);
  const expected = variantExpected(v);
  const outcome: CellOutcome = r.first ? 'fails' : r.failure ? 'error' : 'holds';
  const ctl = 'mode' in r && r.mode === 'controlled' ? r : null;
  const failure = r.failure ? { code: r.failure.code, message: r.failure.message, ...(r.failure.actor === undefined ? {} : { actor: r.failure.actor }) } : null;
  return {
    scenario: c.scenario,
    variant: c.variant,
    seed: c.seed,
    buggy: v.buggy,
    expected,
    outcome,
    asExpected: outcome === expected,
    invariant: r.first?.invariant ?? null,
    round: r.first?.iteration ?? null,
    detail: r.first?.detail ?? null,
    iterations: r.iterations,
    schedules: ctl ? ctl.schedules : null,
    steps: ctl ? ctl.steps : null,
    traceDigest: ctl ? ctl.traceDigest : null,
    replay: ctl ? ctl.replay : null,
    failure,
    rerun: rerunCommand(p, c, expected),
    elapsedMs: Math.round(r.elapsedMs),
  };
}

/** Counts over cells. */
export function summarize(cells: readonly CampaignCell[]): CampaignSummary {
  const s: CampaignSummary = { cells: cells.length, asExpected: 0, unexpected: 0, fails: 0, holds: 0, errors: 0 };
  for (const c of cells) {
    if (c.asExpected) s.asExpected++;
    else s.unexpected++;
    if (c.outcome === 'fails') s.fails++;
    else if (c.outcome === 'holds') s.holds++;
    else s.errors++;
  }
  return s;
}

/** sha256 (16 hex digits) of the cells without `elapsedMs`: what must be equal between a merge and the unsharded run. */
export function outcomeDigest(cells: readonly CampaignCell[]): string {
  const h = createHash('sha256');
  for (const c of cells) {
    const { elapsedMs: _t, ...rest } = c;
    h.update(JSON.stringify(rest));
    h.update('\n');
  }
  return h.digest('hex').slice(0, 16);
}

/** Assemble a campaign document. */
export function campaignDoc(params: CampaignParams, shard: Shard | null, matrixCellCount: number, cells: CampaignCell[], interrupted: boolean, version = hvemuVersion()): CampaignDoc {
  const summary = summarize(cells);
  return { format: CAMPAIGN_FORMAT, version, params, shard, matrixCells: matrixCellCount, interrupted, ok: summary.unexpected === 0, summary, outcomeDigest: outcomeDigest(cells), cells };
}

/** Callbacks and controls of {@link runCampaign}. */
export interface CampaignRunOptions {
  /** Abort: the cell running stops early and is dropped; the document says `interrupted`. */
  signal?: AbortSignal;
  /** Called before each cell. */
  onCellStart?: (cell: CellKey, index: number, total: number) => void;
  /** Called after each cell with its result. */
  onCell?: (cell: CampaignCell, done: number, total: number) => void;
}

/**
 * Run a plan's cells one after the other on the shared actor pool (controlled: a random search
 * per cell, bounded by the schedule budgets; free: a race per cell, bounded by rounds or seconds).
 * Rejects only for bad options; a failing run is a cell with outcome `error`. @emulator
 */
export async function runCampaign(plan: CampaignPlan, o: CampaignRunOptions = {}): Promise<CampaignDoc> {
  const p = plan.params;
  const cells: CampaignCell[] = [];
  let interrupted = false;
  for (const [i, c] of plan.cells.entries()) {
    if (o.signal?.aborted) {
      interrupted = true;
      break;
    }
    o.onCellStart?.(c, i, plan.cells.length);
    // A run that hung destroys the pool: the next cell gets a fresh one.
    const pool = await sharedPool(plan.maxActors);
    const expected = variantExpected(variantOf(c));
    const signal = o.signal === undefined ? {} : { signal: o.signal };
    const r: RaceResult | ControlledRaceResult =
      p.mode === 'controlled'
        ? await runControlledRace(c.scenario, { variant: c.variant, seed: c.seed, strategy: 'random', iterations: p.iterations ?? DEFAULT_CONTROLLED_ROUNDS, schedules: scheduleBudget(p, expected), pool, ...signal })
        : await runRace(c.scenario, { variant: c.variant, seed: c.seed, ...(p.iterations !== null ? { iterations: p.iterations } : { seconds: p.seconds ?? DEFAULT_FREE_SECONDS }), pool, ...signal });
    if (r.interrupted) {
      interrupted = true;
      break;
    }
    const cell = cellFromRace(p, c, r);
    cells.push(cell);
    o.onCell?.(cell, cells.length, plan.cells.length);
  }
  return campaignDoc(p, plan.shard, plan.matrix.length, cells, interrupted);
}

/** A part to merge: the file it came from (for messages) and its text. */
export interface CampaignPart {
  file: string;
  text: string;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Parse and check one part (EMU_ERR_BAD_PARAM naming `PART` and the file). */
export function parseCampaignDoc(part: CampaignPart): CampaignDoc {
  const bad = (why: string) => badParam('PART', `${part.file}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(part.text);
  } catch (e) {
    throw bad(`not JSON (${e instanceof Error ? e.message : String(e)}); give the output of hvemu campaign --json or --out`);
  }
  if (!isObj(doc) || doc.format !== CAMPAIGN_FORMAT) throw bad(`not a campaign document (no "format": "${CAMPAIGN_FORMAT}"); give the output of hvemu campaign --json or --out`);
  const p = doc.params;
  if (!isObj(p) || (p.mode !== 'controlled' && p.mode !== 'free') || !Array.isArray(p.scenarios) || !Array.isArray(p.variants) || !isObj(p.seeds)) throw bad('its params are damaged');
  if (doc.shard !== null && !(isObj(doc.shard) && Number.isInteger(doc.shard.index) && Number.isInteger(doc.shard.count))) throw bad('its shard is damaged');
  if (typeof doc.version !== 'string' || typeof doc.interrupted !== 'boolean' || !Array.isArray(doc.cells)) throw bad('damaged (version, interrupted or cells missing)');
  for (const c of doc.cells as unknown[]) {
    if (!isObj(c) || typeof c.scenario !== 'string' || typeof c.variant !== 'string' || !Number.isInteger(c.seed) || typeof c.asExpected !== 'boolean' || typeof c.outcome !== 'string') throw bad('a cell is damaged');
  }
  return doc as unknown as CampaignDoc;
}

/** Flag-like words for a params key in messages. */
const PARAM_FLAGS: Record<keyof CampaignParams, string> = {
  mode: '--mode',
  strategy: 'strategy',
  scenarios: '--scenarios',
  variants: '--variants',
  seeds: '--seeds',
  iterations: '--iterations',
  schedules: '--schedules',
  buggySchedules: '--buggy-schedules',
  seconds: '--seconds',
};

const shardText = (s: Shard | null): string => (s ? `${s.index}/${s.count}` : 'the whole matrix');

/**
 * Merge the parts of one campaign (its shards, or one whole document) into the document the
 * unsharded campaign gives. EMU_ERR_BAD_PARAM naming `PART` and the file when a part is not a
 * campaign document, was made with other parameters or another hvemu version, was interrupted,
 * repeats a shard, does not hold exactly its shard's cells, or when a shard is missing.
 */
export function mergeCampaigns(parts: readonly CampaignPart[]): CampaignDoc {
  if (parts.length === 0) throw badParam('PART', 'no part given');
  const docs = parts.map((p) => ({ file: p.file, doc: parseCampaignDoc(p) }));
  const ref = docs[0]!;
  for (const { file, doc } of docs.slice(1)) {
    if (doc.version !== ref.doc.version) throw badParam('PART', `${file} was made by hvemu ${doc.version}, ${ref.file} by ${ref.doc.version} (run every shard with one version)`);
    for (const k of Object.keys(PARAM_FLAGS) as (keyof CampaignParams)[]) {
      const a = JSON.stringify(doc.params[k]);
      const b = JSON.stringify(ref.doc.params[k]);
      if (a !== b) throw badParam('PART', `${file} is from another campaign: ${PARAM_FLAGS[k]} ${a} there, ${b} in ${ref.file} (shards must share every parameter but --shard)`);
    }
  }
  for (const { file, doc } of docs) {
    if (doc.interrupted) throw badParam('PART', `${file} was interrupted after ${doc.cells.length} cells${doc.shard ? ` of shard ${shardText(doc.shard)}` : ''}: run ${doc.shard ? 'that shard' : 'the campaign'} again`);
  }
  const whole = docs.filter((d) => d.doc.shard === null);
  if (whole.length > 0 && docs.length > 1) throw badParam('PART', `${whole[0]!.file} covers the whole matrix; it cannot be merged with other parts`);
  const count = ref.doc.shard?.count ?? 1;
  const byIndex = new Map<number, string>();
  for (const { file, doc } of docs) {
    if (doc.shard && doc.shard.count !== count) throw badParam('PART', `${file} is shard ${shardText(doc.shard)}, ${ref.file} is shard ${shardText(ref.doc.shard)}: shards of one campaign share N`);
    const idx = doc.shard?.index ?? 1;
    const prev = byIndex.get(idx);
    if (prev !== undefined) throw badParam('PART', `${file} and ${prev} are both shard ${shardText(doc.shard)}`);
    byIndex.set(idx, file);
  }
  const missing = Array.from({ length: count }, (_, i) => i + 1).filter((i) => !byIndex.has(i));
  if (missing.length > 0) throw badParam('PART', `shard${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${i}/${count}`).join(', ')} missing (given: ${[...byIndex].sort(([a], [b]) => a - b).map(([i, f]) => `${i}/${count} ${f}`).join(', ')})`);
  let matrix: CellKey[];
  try {
    matrix = matrixCells(ref.doc.params);
  } catch (e) {
    throw badParam('PART', `${ref.file}: its matrix is not one this hvemu knows (${e instanceof Error ? e.message : String(e)})`);
  }
  const cells = new Map<string, CampaignCell>();
  for (const { file, doc } of docs) {
    const want = shardCells(matrix, doc.shard).map(cellId);
    const got = doc.cells.map(cellId);
    const i = want.findIndex((k, j) => got[j] !== k);
    if (want.length !== got.length || i >= 0) {
      const at = i >= 0 ? i : Math.min(want.length, got.length);
      throw badParam('PART', `${file} does not hold exactly the cells of shard ${shardText(doc.shard)} (${want.length} expected, ${got.length} found; cell ${at + 1}: ${got[at] ?? 'none'} where ${want[at] ?? 'none'} belongs)`);
    }
    for (const c of doc.cells) cells.set(cellId(c), c);
  }
  return campaignDoc(ref.doc.params, null, matrix.length, matrix.map((k) => cells.get(cellId(k))!), false, ref.doc.version);
}

/** Write an output file atomically (temp file + rename); returns the error message, or null once written. */
export function writeCampaignFile(file: string, data: string): string | null {
  try {
    writeFileAtomic(file, data);
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}
