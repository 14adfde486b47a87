/**
 * Reads JUnit XML back (@xmldom/xmldom, stopping at any error: malformed XML throws) and
 * checks its structure: the counts of `<testsuites>` and of each `<testsuite>` agree with the
 * testcases they hold, every testcase has a classname, a name and a time, and at most one of
 * `<failure>` / `<error>`.
 */
import type { ExecutionContext } from 'ava';
import { DOMParser, onErrorStopParsing, type Element } from '@xmldom/xmldom';

/** A testcase as parsed. */
export interface JunitCase {
  classname: string;
  name: string;
  time: number;
  failure: { message: string; type: string; text: string } | null;
  error: { message: string; type: string; text: string } | null;
  systemOut: string | null;
}

/** A testsuite as parsed. */
export interface JunitSuite {
  name: string;
  tests: number;
  failures: number;
  errors: number;
  properties: Map<string, string>;
  cases: JunitCase[];
}

/** The whole document as parsed. */
export interface Junit {
  tests: number;
  failures: number;
  errors: number;
  suites: JunitSuite[];
}

const children = (e: Element, tag?: string): Element[] => Array.from(e.childNodes).filter((n): n is Element => n.nodeType === 1 && (tag === undefined || (n as Element).tagName === tag));

function issue(e: Element, tag: 'failure' | 'error'): JunitCase['failure'] {
  const [f, ...more] = children(e, tag);
  if (more.length > 0) throw new Error(`a testcase with more than one <${tag}>`);
  return f ? { message: f.getAttribute('message') ?? '', type: f.getAttribute('type') ?? '', text: f.textContent ?? '' } : null;
}

const num = (e: Element, a: string): number => {
  const v = e.getAttribute(a);
  if (v === null || !/^\d+(\.\d+)?$/.test(v)) throw new Error(`<${e.tagName}> has no numeric ${a} (${v})`);
  return Number(v);
};

/** Parse XML strictly: any error throws. */
export function parseXml(xml: string): Element {
  const root = new DOMParser({ onError: onErrorStopParsing }).parseFromString(xml, 'text/xml').documentElement;
  if (!root) throw new Error('no root element');
  return root;
}

/** Parse JUnit XML and check its structure (throws on a broken one). */
export function parseJunit(t: ExecutionContext, xml: string): Junit {
  t.regex(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>/);
  const root = parseXml(xml);
  t.is(root.tagName, 'testsuites');
  const suites: JunitSuite[] = children(root, 'testsuite').map((s) => {
    const cases = children(s, 'testcase').map((c) => {
      const tc: JunitCase = { classname: c.getAttribute('classname') ?? '', name: c.getAttribute('name') ?? '', time: num(c, 'time'), failure: issue(c, 'failure'), error: issue(c, 'error'), systemOut: children(c, 'system-out')[0]?.textContent ?? null };
      t.false(tc.failure !== null && tc.error !== null, 'a testcase has a failure or an error, not both');
      t.true(tc.classname.length > 0 && tc.name.length > 0);
      return tc;
    });
    const properties = new Map(children(s, 'properties').flatMap((p) => children(p, 'property')).map((p) => [p.getAttribute('name') ?? '', p.getAttribute('value') ?? ''] as const));
    const suite: JunitSuite = { name: s.getAttribute('name') ?? '', tests: num(s, 'tests'), failures: num(s, 'failures'), errors: num(s, 'errors'), properties, cases };
    t.is(suite.tests, cases.length, `${suite.name}: tests`);
    t.is(suite.failures, cases.filter((c) => c.failure).length, `${suite.name}: failures`);
    t.is(suite.errors, cases.filter((c) => c.error).length, `${suite.name}: errors`);
    t.true(cases.every((c) => c.classname === suite.name), `${suite.name}: classname = the suite`);
    return suite;
  });
  const j: Junit = { tests: num(root, 'tests'), failures: num(root, 'failures'), errors: num(root, 'errors'), suites };
  t.is(j.tests, suites.reduce((n, s) => n + s.tests, 0), 'testsuites tests');
  t.is(j.failures, suites.reduce((n, s) => n + s.failures, 0), 'testsuites failures');
  t.is(j.errors, suites.reduce((n, s) => n + s.errors, 0), 'testsuites errors');
  return j;
}
