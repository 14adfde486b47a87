/**
 * TDX bring-up checkers on hand-built records: each flags the bad state the race produces and
 * accepts the states the fixed flows leave.
 */
import test from 'ava';
import {
  kvmOnlineCpusVmxOn,
  tdxConfigAllOnlineLpsInit,
  tdxInitOnce,
  tdxSeamcallOnReadyCpu,
  tdxTdKeepsPackagesOnline,
  type SeamcallRecord,
  type TdxBringupRound,
} from '../../src/invariants/tdx-bringup.js';

function call(over: Partial<SeamcallRecord>): SeamcallRecord {
  return { cpu: 0, leaf: 'TDH.VP.ENTER', by: 'vm', vmxe: true, inVmx: true, lpInit: true, status: 'TDX_SUCCESS', ...over };
}
function round(over: Partial<TdxBringupRound>): TdxBringupRound {
  return { seamcalls: [], configs: [], sysInitRuns: 1, sysConfigRuns: 1, quiescent: null, ...over };
}

test('tdxSeamcallOnReadyCpu: a SEAMCALL on a CPU that is not post-VMXON, or not LP-initialised, is a violation', (t) => {
  const v = tdxSeamcallOnReadyCpu(
    round({
      seamcalls: [
        call({ cpu: 2, leaf: 'TDH.SYS.KEY.CONFIG', by: 'module-init', vmxe: false, inVmx: false, lpInit: false, status: 'TDX_SEAMCALL_UD' }),
        call({ cpu: 3, leaf: 'TDH.VP.ENTER', lpInit: false, status: 'TDX_SYS_LP_INIT_NOT_DONE' }),
        call({ cpu: 1, leaf: 'TDH.SYS.LP.INIT', by: 'hotplug', vmxe: true, inVmx: false }),
      ],
    }),
  );
  t.is(v.length, 3);
  t.regex(v[0]?.message ?? '', /TDH\.SYS\.KEY\.CONFIG on CPU2 \(by module-init\) while CPU2 was not post-VMXON \(CR4\.VMXE=0, VMX operation=0\): TDX_SEAMCALL_UD/);
  t.regex(v[1]?.message ?? '', /TDH\.VP\.ENTER on CPU3 \(by vm\) before TDH\.SYS\.LP\.INIT ran on that LP/);
  t.regex(v[2]?.message ?? '', /CR4\.VMXE=1, VMX operation=0/);
});

test('tdxSeamcallOnReadyCpu accepts TDH.SYS.INIT and TDH.SYS.LP.INIT before the LP is initialised, and ready CPUs', (t) => {
  const ok = round({ seamcalls: [call({ leaf: 'TDH.SYS.INIT', lpInit: false }), call({ leaf: 'TDH.SYS.LP.INIT', lpInit: false }), call({}), call({ cpu: 3, leaf: 'TDH.MNG.KEY.CONFIG' })] });
  t.deepEqual(tdxSeamcallOnReadyCpu(ok), []);
});

test('tdxConfigAllOnlineLpsInit: TDH.SYS.CONFIG while an online CPU has not run TDH.SYS.LP.INIT; an offline one does not count', (t) => {
  const bad = round({ configs: [{ cpu: 0, by: 'module-init', online: [0, 1, 2, 3], lpInitialized: [0, 1, 3], status: 'TDX_SYS_CONFIG_NOT_PENDING' }] });
  const v = tdxConfigAllOnlineLpsInit(bad);
  t.is(v.length, 1);
  t.regex(v[0]?.message ?? '', /TDH\.SYS\.CONFIG on CPU0 \(by module-init\) while CPU2 was online without TDH\.SYS\.LP\.INIT: TDX_SYS_CONFIG_NOT_PENDING/);
  const offline = round({ configs: [{ cpu: 0, by: 'module-init', online: [0, 1, 3], lpInitialized: [0, 1, 3], status: 'TDX_SYS_CONFIG_NOT_PENDING' }] });
  t.deepEqual(tdxConfigAllOnlineLpsInit(offline), [], 'the module refuses (all platform LPs needed), but the kernel kept its promise');
  const two = round({ configs: [{ cpu: 0, by: 'module-init', online: [0, 1, 2, 3], lpInitialized: [0, 1], status: 'TDX_SYS_CONFIG_NOT_PENDING' }] });
  t.regex(tdxConfigAllOnlineLpsInit(two)[0]?.message ?? '', /CPU2, CPU3 were online/);
});

test('kvmOnlineCpusVmxOn: with a usage reference every online CPU must be post-VMXON; without one nothing is required', (t) => {
  const cpus = [
    { cpu: 0, online: true, vmxe: true, inVmx: true },
    { cpu: 1, online: true, vmxe: false, inVmx: false },
    { cpu: 2, online: false, vmxe: false, inVmx: false },
  ];
  const v = kvmOnlineCpusVmxOn(round({ quiescent: { usageCount: 2, cpus } }));
  t.is(v.length, 1);
  t.regex(v[0]?.message ?? '', /CPU1 is online with kvm_usage_count = 2 but not post-VMXON/);
  t.deepEqual(kvmOnlineCpusVmxOn(round({ quiescent: { usageCount: 0, cpus } })), []);
  t.deepEqual(kvmOnlineCpusVmxOn(round({})), []);
});

test('tdxInitOnce: TDH.SYS.INIT or TDH.SYS.CONFIG twice is a violation; once or never is fine', (t) => {
  t.is(tdxInitOnce(round({ sysInitRuns: 2, sysConfigRuns: 2 })).length, 2);
  t.deepEqual(tdxInitOnce(round({ sysInitRuns: 1, sysConfigRuns: 0 })), []);
});

test('tdxTdKeepsPackagesOnline: a key on a package set with a dark package is a violation (and names the leak); no key, or all packages online, is fine', (t) => {
  const dark = { when: 'right after cpu_down(CPU3) returned 0', keyPackages: 0b11, onlinePackages: 0b01, nrPackages: 2 };
  const v = tdxTdKeepsPackagesOnline({ samples: [dark], release: { released: false, status: 'TDX_WBCACHE_NOT_COMPLETE' } });
  t.is(v.length, 1);
  t.regex(v[0]?.message ?? '', /a TD holds its key on package\(s\) 0, 1 while package 1 has no online CPU \(right after cpu_down\(CPU3\) returned 0\); at destruction the HKID could not be reclaimed \(TDX_WBCACHE_NOT_COMPLETE\): leaked/);
  t.deepEqual(tdxTdKeepsPackagesOnline({ samples: [{ ...dark, keyPackages: 0 }], release: null }), []);
  t.deepEqual(tdxTdKeepsPackagesOnline({ samples: [{ ...dark, onlinePackages: 0b11 }], release: { released: true, status: 'TDX_SUCCESS' } }), []);
});
