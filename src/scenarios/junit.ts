/**
 * A campaign as JUnit XML, so that findings show up natively in CI (GitHub Actions reporters,
 * GitLab, Jenkins): one `<testsuite>` per scenario, one `<testcase>` per scenario × variant ×
 * seed (classname = scenario, name = `VARIANT seed SEED`). A cell whose outcome is the expected
 * one passes — a buggy variant that breaks its invariant, a fixed variant that holds — and says
 * so in `<system-out>` (with the replay command of a find); an unexpected outcome is a
 * `<failure>` (a fixed variant violated, a buggy variant not reached) or an `<error>` (the run
 * itself failed), carrying the invariant and the replay or rerun command. Built with xmlbuilder2
 * (escaping, well-formedness), not by string concatenation.
 */
import { create } from 'xmlbuilder2';
import type { CampaignCell, CampaignDoc } from './campaign.js';

/** Characters XML 1.0 does not allow in text or attributes (C0 controls but tab, LF, CR; U+FFFE/FFFF; lone surrogates). */
// eslint-disable-next-line no-control-regex -- matching the control characters XML forbids is the point
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text made safe for XML 1.0 (disallowed characters become U+FFFD). */
function xmlText(s: string): string {
  return s.replace(NOT_XML, '\uFFFD');
}

const seconds = (ms: number): string => (ms / 1000).toFixed(3);

/** The testcase name of a cell: `VARIANT seed SEED`. */
export function junitCaseName(c: Pick<CampaignCell, 'variant' | 'seed'>): string {
  return `${c.variant} seed ${c.seed}`;
}

/** How to see a cell again: the replay token's command when there is one, else the rerun. */
function reproduce(c: CampaignCell): string {
  return c.replay ? `replay (exact): hvemu replay ${c.replay}\nrerun the search: ${c.rerun}` : `rerun: ${c.rerun}`;
}

/** The budget words of a cell that held. */
function budget(doc: CampaignDoc, c: CampaignCell): string {
  if (c.schedules !== null) return `${c.schedules} schedule${c.schedules === 1 ? '' : 's'} of ${c.iterations} round${c.iterations === 1 ? '' : 's'}`;
  return doc.params.iterations !== null ? `${c.iterations} rounds` : `${c.iterations} rounds in ${doc.params.seconds} s`;
}

/** Message, type and body of an unexpected cell's `<failure>` / `<error>`. */
function problem(doc: CampaignDoc, c: CampaignCell): { tag: 'failure' | 'error'; message: string; type: string; body: string } {
  if (c.outcome === 'error') {
    const f = c.failure;
    return { tag: 'error', message: `the run failed: ${f?.code ?? 'error'}${f?.actor ? ` (${f.actor})` : ''}`, type: f?.code ?? 'error', body: `${f?.message ?? ''}\n${reproduce(c)}` };
  }
  if (c.outcome === 'fails') {
    const message = `${c.variant} is expected to hold but broke ${c.invariant} in round ${c.round}`;
    return { tag: 'failure', message, type: c.invariant ?? 'violation', body: `invariant ${c.invariant}: ${c.detail ?? ''}\n${reproduce(c)}` };
  }
  const message = `${c.variant} is expected to break an invariant but held over ${budget(doc, c)} (not reached)`;
  return { tag: 'failure', message, type: 'not-reached', body: `no violation in ${budget(doc, c)}; a larger budget may reach it\n${reproduce(c)}` };
}

/** What a cell that passed did, for `<system-out>`. */
function passText(doc: CampaignDoc, c: CampaignCell): string {
  if (c.outcome === 'fails') return `expected violation: ${c.invariant} in round ${c.round}${c.schedules !== null ? ` of schedule ${c.schedules}` : ''}\n${c.detail ?? ''}\n${reproduce(c)}`;
  return `held as expected: no violation in ${budget(doc, c)}`;
}

/** The campaign's parameters as JUnit properties. */
function properties(doc: CampaignDoc): [string, string][] {
  const p = doc.params;
  const props: [string, string][] = [
    ['hvemu.version', doc.version],
    ['mode', p.mode],
    ['scenarios', p.scenarios.join(',')],
    ['variants', p.variants.join(',')],
    ['seeds', `${p.seeds.from}..${p.seeds.to}`],
    ['shard', doc.shard ? `${doc.shard.index}/${doc.shard.count}` : 'all'],
    ['outcomeDigest', doc.outcomeDigest],
  ];
  if (p.strategy !== null) props.push(['strategy', p.strategy]);
  if (p.iterations !== null) props.push(['iterations', String(p.iterations)]);
  if (p.schedules !== null) props.push(['schedules', String(p.schedules)]);
  if (p.buggySchedules !== null) props.push(['buggySchedules', String(p.buggySchedules)]);
  if (p.seconds !== null) props.push(['seconds', String(p.seconds)]);
  if (doc.interrupted) props.push(['interrupted', 'true']);
  return props;
}

/** The JUnit XML document of a campaign (or of a merge). */
export function campaignJunit(doc: CampaignDoc): string {
  const bySuite = new Map<string, CampaignCell[]>();
  for (const c of doc.cells) bySuite.set(c.scenario, [...(bySuite.get(c.scenario) ?? []), c]);
  const count = (cs: readonly CampaignCell[], outcome: 'failure' | 'error') => cs.filter((c) => !c.asExpected && (c.outcome === 'error') === (outcome === 'error')).length;
  const total = (cs: readonly CampaignCell[]) => cs.reduce((s, c) => s + c.elapsedMs, 0);
  const root = create({ version: '1.0', encoding: 'UTF-8' }).ele('testsuites', {
    name: 'hvemu campaign',
    tests: String(doc.cells.length),
    failures: String(count(doc.cells, 'failure')),
    errors: String(count(doc.cells, 'error')),
    skipped: '0',
    time: seconds(total(doc.cells)),
  });
  const props = properties(doc);
  for (const [scenario, cells] of bySuite) {
    const suite = root.ele('testsuite', { name: scenario, tests: String(cells.length), failures: String(count(cells, 'failure')), errors: String(count(cells, 'error')), skipped: '0', time: seconds(total(cells)) });
    const ps = suite.ele('properties');
    for (const [name, value] of props) ps.ele('property', { name, value: xmlText(value) });
    for (const c of cells) {
      const tc = suite.ele('testcase', { classname: scenario, name: junitCaseName(c), time: seconds(c.elapsedMs) });
      if (c.asExpected) {
        tc.ele('system-out').txt(xmlText(passText(doc, c)));
      } else {
        const p = problem(doc, c);
        tc.ele(p.tag, { message: xmlText(p.message), type: xmlText(p.type) }).txt(xmlText(p.body));
      }
    }
  }
  return root.end({ prettyPrint: true, wellFormed: true }) + '\n';
}
