import { performance } from 'node:perf_hooks';
import { ChangeBatcher, DEFAULT_BATCHER_LIMITS, partitionKeyFor } from '../capture/change-batcher';
import type { Change, Column } from '../core/change-event';
import { median } from './timing';

/**
 * `node --import tsx bench/batcher.ts [--changes N] [--rounds K]`: CPU per change of
 * ChangeBatcher.add (plus draining the records at capture's flush size), against the way it was
 * written before issue 12 — JSON.stringify of every change object, a template-string batch key per
 * change, an array of parts joined at the seal — measured in the same process, alternating rounds,
 * on changes shaped like `npm run bench`'s bulk workload (the 12 columns of bench_order, as the
 * decoder hands them over: 10,000 changes per transaction sharing op, lsn and ts). Both must write
 * records that parse to the same batches; the bench checks that before timing.
 */

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(process.argv[at + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} takes a positive integer`);
  return value;
}

const COLUMNS: Column[] = [
  ['order_id', 'int4', true],
  ['created_at', 'timestamp', false],
  ['last_updated', 'timestamp', false],
  ['design_id', 'int4', false],
  ['staff_id', 'int4', false],
  ['counterparty_id', 'int4', false],
  ['units_sold', 'int4', false],
  ['unit_price', 'numeric', false],
  ['currency_id', 'int4', false],
  ['agreed_delivery_date', 'text', false],
  ['agreed_payment_date', 'text', false],
  ['agreed_delivery_location_id', 'int4', false],
].map(([name, type, key]) => ({ name: name as string, type: type as string, key: key as boolean }));

function workload(count: number): Change[] {
  const changes: Change[] = [];
  let lsn = '';
  let ts = '';
  for (let i = 0; i < count; i++) {
    const seq = i % 10_000;
    if (seq === 0) {
      lsn = `00000000/${(0x1000000 + i * 200).toString(16).toUpperCase().padStart(8, '0')}`;
      ts = `2026-12-01T10:${String(Math.floor(i / 10_000) % 60).padStart(2, '0')}:00.123456Z`;
    }
    changes.push({
      op: 'insert',
      lsn,
      seq,
      ts,
      values: [
        String(i + 1),
        '2026-12-01 10:00:00.123',
        '2026-12-01 10:00:00.123',
        String(1 + (i % 300)),
        String(1 + (i % 20)),
        String(1 + (i % 20)),
        String(1000 + (i % 90_000)),
        `${2 + (i % 3)}.${String(i % 100).padStart(2, '0')}`,
        String(1 + (i % 3)),
        '2026-12-08',
        '2026-12-15',
        String(1 + (i % 30)),
      ],
    });
  }
  return changes;
}

/** The hot path as it was: what the new add() is measured against. */
class BaselineBatcher {
  private readonly open = new Map<string, { header: string; key: string; parts: string[]; bytes: number }>();
  private sealed: Buffer[] = [];
  byteCount = 0;

  add(schema: string, table: string, columns: readonly Column[], layoutId: number, change: Change): void {
    const slot = `${schema}\u0000${table}\u0000${layoutId}`;
    const part = JSON.stringify(change);
    const partBytes = Buffer.byteLength(part) + 1;
    let batch = this.open.get(slot);
    if (
      batch &&
      (batch.bytes + partBytes > DEFAULT_BATCHER_LIMITS.maxRecordBytes ||
        batch.parts.length >= DEFAULT_BATCHER_LIMITS.maxChangesPerRecord)
    ) {
      this.seal(slot, batch);
      batch = undefined;
    }
    if (!batch) {
      const header = `{"v":1,"epoch":0,"schema":${JSON.stringify(schema)},"table":${JSON.stringify(table)},"columns":${JSON.stringify(columns)},"changes":[`;
      batch = {
        header,
        key: partitionKeyFor(table, columns, change),
        parts: [],
        bytes: Buffer.byteLength(header) + 2,
      };
      this.open.set(slot, batch);
      this.byteCount += batch.bytes;
    }
    batch.parts.push(part);
    batch.bytes += partBytes;
    this.byteCount += partBytes;
  }

  private seal(slot: string, batch: { header: string; parts: string[]; bytes: number }): void {
    this.open.delete(slot);
    const data = Buffer.from(`${batch.header}${batch.parts.join(',')}]}`, 'utf8');
    // Sealed records count until drained, as in ChangeBatcher.byteCount.
    this.byteCount += data.length - batch.bytes;
    this.sealed.push(data);
  }

  drain(): Buffer[] {
    for (const [slot, batch] of this.open) this.seal(slot, batch);
    const out = this.sealed;
    this.sealed = [];
    this.byteCount = 0;
    return out;
  }
}

const FLUSH_BYTES = 1024 * 1024;

function runBaseline(changes: readonly Change[], out?: Buffer[]): void {
  const b = new BaselineBatcher();
  for (const change of changes) {
    b.add('public', 'bench_order', COLUMNS, 0, change);
    if (b.byteCount >= FLUSH_BYTES) out?.push(...b.drain());
  }
  out?.push(...b.drain());
}

function runCurrent(changes: readonly Change[], out?: Buffer[]): void {
  const b = new ChangeBatcher();
  for (const change of changes) {
    b.add('public', 'bench_order', COLUMNS, change);
    if (b.byteCount >= FLUSH_BYTES) for (const r of b.drain()) out?.push(r.data);
  }
  for (const r of b.drain()) out?.push(r.data);
}

function cpuMicrosPerChange(run: (changes: readonly Change[]) => void, changes: readonly Change[]): number {
  const before = process.cpuUsage();
  run(changes);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / changes.length;
}

function main(): void {
  const changes = workload(option('changes', 200_000));
  const rounds = option('rounds', 7);
  // Same batches, parsed: the record format is unchanged.
  const sample = changes.slice(0, 25_000);
  const a: Buffer[] = [];
  const b: Buffer[] = [];
  runBaseline(sample, a);
  runCurrent(sample, b);
  const parsed = (records: Buffer[]) => records.map((r) => JSON.parse(r.toString('utf8')) as unknown);
  if (JSON.stringify(parsed(a)) !== JSON.stringify(parsed(b)))
    throw new Error('the batcher no longer writes the records the baseline writes');
  const byteIdentical = a.length === b.length && a.every((r, i) => r.equals(b[i]));

  const baseline: number[] = [];
  const current: number[] = [];
  const started = performance.now();
  for (let round = 0; round < rounds; round++) {
    baseline.push(cpuMicrosPerChange(runBaseline, changes));
    current.push(cpuMicrosPerChange(runCurrent, changes));
  }
  const fmt = (xs: number[]) =>
    `${median(xs).toFixed(2)} µs/change (rounds: ${xs.map((x) => x.toFixed(2)).join(', ')})`;
  process.stdout.write(
    [
      `ChangeBatcher.add + drain, ${changes.length.toLocaleString('en-GB')} bulk-shaped changes, ${rounds} alternating rounds (${((performance.now() - started) / 1000).toFixed(1)} s)`,
      `  before (JSON.stringify per change): ${fmt(baseline)}`,
      `  now:                                ${fmt(current)}`,
      `  records ${byteIdentical ? 'byte-identical' : 'parse-identical'} to the baseline's`,
      '',
    ].join('\n'),
  );
}

main();
