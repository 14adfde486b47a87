/**
 * The .litmus parser (herdtools7's X86 syntax, the subset hvemu runs): good files as herd writes
 * them, every construct of the subset, and each kind of input outside it rejected with
 * EMU_ERR_BAD_PARAM naming the file, the line and the offending token.
 */
import test from 'ava';
import { EmuError } from '../../src/errors.js';
import { parseLitmus } from '../../src/scenarios/litmus-parse.js';
import { conditionFull, conditionHolds, herdOp, propText, satisfies, type LitmusTest } from '../../src/scenarios/litmus-tests.js';

const parse = (text: string, file = 'test.litmus'): LitmusTest => parseLitmus(text, file, (n) => `litmus:${n}`);

// herdtools7 catalogue/x86/tests/SB.litmus, verbatim.
const HERD_SB = `X86 SB
"PodWR Fre PodWR Fre"
Cycle=Fre PodWR Fre PodWR
Generator=diycross7 (version 7.54+01(dev))
Prefetch=0:x=F,0:y=T,1:y=F,1:x=T
Com=Fr Fr
Orig=PodWR Fre PodWR Fre
{
}
 P0          | P1          ;
 MOV [x],$1  | MOV [y],$1  ;
 MOV EAX,[y] | MOV EAX,[x] ;
exists
(0:EAX=0 /\\ 1:EAX=0)
`;

test('herd\'s own SB.litmus: info lines, an empty init block, the condition on its own line', (t) => {
  const sb = parse(HERD_SB);
  t.like(sb, { id: 'litmus:SB', name: 'SB', title: 'PodWR Fre PodWR Fre', declared: null, source: 'test.litmus', file: 'test.litmus' });
  t.deepEqual(sb.locs, ['x', 'y']);
  t.deepEqual(sb.regs, [['EAX'], ['EAX']]);
  t.deepEqual(sb.init, {});
  t.deepEqual(sb.threads, [
    [
      { op: 'store', loc: 'x', src: { imm: 1 } },
      { op: 'load', reg: 'EAX', loc: 'y', alu: 'mov' },
    ],
    [
      { op: 'store', loc: 'y', src: { imm: 1 } },
      { op: 'load', reg: 'EAX', loc: 'x', alu: 'mov' },
    ],
  ]);
  t.deepEqual(sb.observe, ['0:EAX', '1:EAX']);
  t.is(conditionFull(sb), 'exists (0:EAX=0 /\\ 1:EAX=0)');
});

test('the verdict comment, registers in the init block, every instruction form, herd\'s order of the final state', (t) => {
  const lt = parse(`(* a leading comment *)
X86 ALL "every form"
(* x86-TSO: Forbid. Verdict: made up for the parser test,
   over two lines. (* nested *) *)
{ x=1; [y]=-2; z; P0:EAX=7; 1:ebx=0x10; }
 P0                  | P1                  ;
 MOV [x],$1          | mov ebx,[x]         ;
 MOV [y],EAX         | ADD EBX,[y]         ;
 MOV EAX,$-3         | XOR EBX,$1          ;
 MOV ECX,EAX         | OR EBX,ECX          ;
 INC EAX             | DEC EBX             ;
 ADD [x],2           | LOCK ADD [x],EBX    ;
 INC [y]             | LOCK INC [x]        ;
 LOCK DEC [y]        | LOCK XOR [z],$4     ;
 XCHG [x],EAX        | LOCK OR [z],$1      ;
 XCHG ECX,[y]        | LOCK XCHG [z],EBX   ;
 LOCK XADD [x],EAX   | LOCK CMPXCHG [z],EBX ;
 MFENCE              | LFENCE              ;
                     | SFENCE              ;
locations [z; 0:ECX;]
~exists (x=1 /\\ P1:EAX=0 \\/ ~y=2 /\\ [z]!=3 => 0:EAX==1)
`);
  t.is(lt.name, 'ALL');
  t.is(lt.title, 'every form');
  t.is(lt.declared, 'Forbid');
  t.is(lt.source, 'x86-TSO: Forbid. Verdict: made up for the parser test, over two lines. (* nested *)');
  t.deepEqual(lt.init, { x: 1, y: -2, z: 0, '0:EAX': 7, '1:EBX': 16 });
  t.deepEqual(lt.locs, ['x', 'y', 'z']);
  t.deepEqual(lt.regs, [['EAX', 'ECX'], ['EAX', 'EBX', 'ECX']]);
  t.deepEqual(lt.observe, ['0:EAX', '0:ECX', '1:EAX', 'x', 'y', 'z']);
  t.deepEqual(lt.threads[0]!.map(herdOp), ['MOV [x],$1', 'MOV [y],EAX', 'MOV EAX,$-3', 'MOV ECX,EAX', 'ADD EAX,$1', 'ADD [x],$2', 'INC [y]', 'LOCK DEC [y]', 'XCHG [x],EAX', 'XCHG [y],ECX', 'LOCK XADD [x],EAX', 'MFENCE']);
  t.deepEqual(lt.threads[1]!.map(herdOp), ['MOV EBX,[x]', 'ADD EBX,[y]', 'XOR EBX,$1', 'OR EBX,ECX', 'ADD EBX,$-1', 'LOCK ADD [x],EBX', 'LOCK INC [x]', 'LOCK XOR [z],$4', 'LOCK OR [z],$1', 'XCHG [z],EBX', 'LOCK CMPXCHG [z],EBX', 'LFENCE', 'SFENCE']);
  t.deepEqual(lt.threads[0]![6], { op: 'rmw', loc: 'y', alu: 'add', src: { imm: 1 }, locked: false, mnemonic: 'INC' });
  t.deepEqual(lt.threads[1]![7], { op: 'rmw', loc: 'z', alu: 'xor', src: { imm: 4 }, locked: true, mnemonic: 'XOR' });
  // herd's precedence: \/ binds loosest, then /\, then =>, then ~.
  t.is(lt.condition.quantifier, '~exists');
  t.is(propText(lt.condition.prop), 'x=1 /\\ 1:EAX=0 \\/ ~y=2 /\\ (~z=3 => 0:EAX=1)');
});

test('quantifiers and propositions: exists, ~exists, forall with true/false, parentheses and herd\'s rules for Ok', (t) => {
  const mk = (cond: string) => parse(`X86 Q\n{ }\n P0 | P1 ;\n MOV EAX,[x] | MOV [x],$1 ;\n${cond}\n`);
  const ex = mk('exists (0:EAX=1)');
  const nex = mk('~ exists (0:EAX=1)');
  const all = mk('forall (0:EAX=0 \\/ 0:EAX=1);');
  const states = [[0, 0], [1, 1]] as const;
  t.deepEqual(ex.observe, ['0:EAX']);
  t.true(conditionHolds(ex, [[0], [1]]));
  t.false(conditionHolds(nex, [[0], [1]]));
  t.true(conditionHolds(nex, [[0]]));
  t.true(conditionHolds(all, [[0], [1]]));
  t.false(conditionHolds(mk('forall (0:EAX=0)'), [[0], [1]]));
  t.is(conditionFull(all), 'forall (0:EAX=0 \\/ 0:EAX=1)');
  const p = mk('exists ((0:EAX=1 \\/ x=0) /\\ ~(x=1 /\\ true) \\/ false)');
  t.is(propText(p.condition.prop), '(0:EAX=1 \\/ x=0) /\\ ~(x=1 /\\ true) \\/ false');
  t.deepEqual(p.observe, ['0:EAX', 'x']);
  t.true(satisfies(p, states[0]));
  t.false(satisfies(p, states[1]));
  // Only `locations`: herd's trivial condition.
  const loc = mk('locations [x; 0:EAX;]');
  t.is(conditionFull(loc), 'forall (true)');
  t.deepEqual(loc.observe, ['0:EAX', 'x']);
});

// Each bad input: the line the error names and the token it quotes.
const BAD: { what: string; text: string; line: number; token?: string; message: RegExp }[] = [
  { what: 'unknown instruction', text: 'X86 T\n{ x=0; }\n P0 ;\n MOV [x],$1 ;\n ADC [x],$1 ;\nexists (x=1)\n', line: 5, token: 'ADC', message: /unknown instruction/ },
  { what: 'a jump', text: 'X86 T\n{ }\n P0 ;\n JMP L0 ;\nexists (x=1)\n', line: 4, token: 'JMP', message: /unknown instruction/ },
  { what: 'another architecture', text: 'AArch64 T\n{ }\n P0 ;\n MOV X0,#1 ;\nexists (x=1)\n', line: 1, token: 'AArch64', message: /only X86 tests/ },
  { what: 'no header', text: '{ x=0; }\n P0 ;\n MOV [x],$1 ;\nexists (x=1)\n', line: 1, token: '{ x=0; }', message: /header line "X86 NAME"/ },
  { what: 'an empty file', text: '', line: 1, message: /header line "X86 NAME"/ },
  { what: 'text before the init block', text: 'X86 T\nhello\n{ }\n P0 ;\n MOV [x],$1 ;\nexists (x=1)\n', line: 2, token: 'hello', message: /expected the init block/ },
  { what: 'indirect addressing', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[EBX] ;\nexists (0:EAX=1)\n', line: 4, token: 'EBX', message: /indirect addressing/ },
  { what: 'a label', text: 'X86 T\n{ }\n P0 ;\n L0: MOV [x],$1 ;\nexists (x=1)\n', line: 4, token: 'L0', message: /labels and jumps/ },
  { what: 'LOCK on MOV', text: 'X86 T\n{ }\n P0 ;\n LOCK MOV [x],$1 ;\nexists (x=1)\n', line: 4, token: 'MOV', message: /LOCK prefix on/ },
  { what: 'LOCK on a register', text: 'X86 T\n{ }\n P0 ;\n LOCK ADD EAX,$1 ;\nexists (0:EAX=1)\n', line: 4, token: 'ADD', message: /LOCK needs a read-modify-write of memory/ },
  { what: 'XADD without LOCK', text: 'X86 T\n{ }\n P0 ;\n XADD [x],EAX ;\nexists (x=1)\n', line: 4, token: 'XADD', message: /without LOCK is not atomic/ },
  { what: 'two memory operands', text: 'X86 T\n{ }\n P0 ;\n MOV [x],[y] ;\nexists (x=1)\n', line: 4, token: 'MOV', message: /not two locations/ },
  { what: 'an unknown operand', text: 'X86 T\n{ }\n P0 ;\n MOV RAX,[x] ;\nexists (x=1)\n', line: 4, token: 'RAX', message: /expected an operand/ },
  { what: 'a missing comma', text: 'X86 T\n{ }\n P0 ;\n MOV [x] $1 ;\nexists (x=1)\n', line: 4, token: '$', message: /expected "," between the operands of MOV/ },
  { what: 'too few columns', text: 'X86 T\n{ }\n P0 | P1 ;\n MOV [x],$1 ;\nexists (x=1)\n', line: 4, message: /row has 1 columns, the thread header has 2/ },
  { what: 'too many columns', text: 'X86 T\n{ }\n P0 ;\n MOV [x],$1 | MOV [y],$1 ;\nexists (x=1)\n', line: 4, token: 'MOV', message: /more than the 1 thread columns/ },
  { what: 'threads out of order', text: 'X86 T\n{ }\n P0 | P2 ;\n MOV [x],$1 | MOV [y],$1 ;\nexists (x=1)\n', line: 3, token: 'P2', message: /expected the thread column P1/ },
  { what: 'a typed declaration', text: 'X86 T\n{ int x=0; }\n P0 ;\n MOV [x],$1 ;\nexists (x=1)\n', line: 2, token: 'int', message: /typed declarations/ },
  { what: 'a pointer value', text: 'X86 T\n{\n 0:EAX=x;\n}\n P0 ;\n MOV [x],$1 ;\nexists (x=1)\n', line: 3, token: 'x', message: /pointer \(address\) values/ },
  { what: 'a register of no thread', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\nexists (0:EAX=1 /\\ 5:EAX=0)\n', line: 5, token: '5', message: /there is no thread 5/ },
  { what: 'a register without its thread', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\nexists (EAX=1)\n', line: 5, token: 'EAX', message: /needs its thread/ },
  { what: 'a value that is no number', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\nexists (0:EAX=one)\n', line: 5, token: 'one', message: /comparing two locations|expected a number/ },
  { what: 'a value out of range', text: 'X86 T\n{ }\n P0 ;\n MOV [x],$99999999999 ;\nexists (x=1)\n', line: 4, token: '99999999999', message: /32-bit range/ },
  { what: 'a filter', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\nfilter (0:EAX=1)\nexists (0:EAX=1)\n', line: 5, token: 'filter', message: /only exists, ~exists and forall/ },
  { what: 'no condition', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\n', line: 5, token: 'end of file', message: /no final condition/ },
  { what: 'text after the condition', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\nexists (0:EAX=1)\nexists (0:EAX=0)\n', line: 6, token: 'exists', message: /after the final condition/ },
  { what: 'an unclosed parenthesis', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\nexists (0:EAX=1\n', line: 6, token: 'end of file', message: /expected "\)"/ },
  { what: 'an unclosed comment', text: 'X86 T\n(* no end\n{ }\n P0 ;\n MOV EAX,[x] ;\nexists (0:EAX=1)\n', line: 2, token: '(*', message: /comment never closed/ },
  { what: 'a row without ;', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x]\nexists (0:EAX=1)\n', line: 5, token: 'exists', message: /expected "\|" or ";" after MOV/ },
  { what: 'a stray character', text: 'X86 T\n{ }\n P0 ;\n MOV EAX,[x] ;\nexists (0:EAX=1 & x=0)\n', line: 5, token: '&', message: /unexpected character/ },
];

for (const b of BAD) {
  test(`bad input, ${b.what}: EMU_ERR_BAD_PARAM naming bad.litmus:${b.line}${b.token === undefined ? '' : ` and "${b.token}"`}`, (t) => {
    const e = t.throws(() => parse(b.text, 'dir/bad.litmus'), { instanceOf: EmuError });
    t.is(e.code, 'EMU_ERR_BAD_PARAM');
    t.true(e.message.startsWith(`invalid litmus file dir/bad.litmus:${b.line}: `), e.message);
    t.regex(e.message, b.message);
    if (b.token !== undefined) t.true(e.message.endsWith(` "${b.token}"`), e.message);
    t.like(e.detail, { param: 'litmus', file: 'dir/bad.litmus', line: b.line, ...(b.token === undefined ? {} : { token: b.token }) });
  });
}
