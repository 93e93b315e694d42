import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../core/logger';
import { OVERSIZED_ROOT } from '../../core/oversized-change';
import { INGESTION_BUCKET, startLocalStack, type LocalStack } from '../../local/local-stack';
import { removeDataDir } from '../../local/postgres-placement';
import { s3ClientFor } from '../../local/s3rver';
import { renderVerifyReport, verifyWarehouse, type VerifyReport } from '../../processors/load/verify';
import { installTotesys } from '../../totesys';
import { createTestDatabase, waitFor, withClient } from '../support/pg';

// A value bigger than any stream record (Kinesis 1 MiB, Firehose 1,000 KiB) through the whole local
// pipeline: capture → kinesalite → the local Firehose → s3rver → transform → load, real Postgres at
// both ends. One arrives in the initial snapshot, one in the stream; both reach the warehouse byte
// for byte, through a pointer in the stream and the event stored under oversized/.

jest.setTimeout(300_000);

/** About 3 MiB of UTF-8 that CSV and JSON both have to escape: quotes, commas, line breaks, emoji. */
function hugeText(tag: string): string {
  const unit = `${tag} "quoted", line\nbreak\r\n back\\slash ünïcödé 😀 `;
  return unit.repeat(Math.ceil((3 * 1024 * 1024) / Buffer.byteLength(unit)));
}

const lines: string[] = [];
let stack: LocalStack | undefined;
const dataDirs: string[] = [];

afterAll(async () => {
  await stack?.stop();
  for (const dir of dataDirs) removeDataDir(dir);
});

function start(
  names: { sourceUrl: string; warehouseUrl: string; dataDir: string; slot: string },
  env: Record<string, string> = {},
): Promise<LocalStack> {
  return startLocalStack({
    dataDir: names.dataDir,
    sourceUrl: names.sourceUrl,
    warehouseUrl: names.warehouseUrl,
    logger: silentLogger,
    bufferIntervalMs: 300,
    heartbeatIntervalMs: 1000,
    captureEnv: { TOTES_SLOT: `slot_${names.slot}`, TOTES_PUBLICATION: `pub_${names.slot}`, ...env },
    onCaptureOutput: (line) => lines.push(line),
  });
}

async function converged(sourceUrl: string, warehouseUrl: string): Promise<void> {
  let last: VerifyReport | undefined;
  await waitFor(
    'the warehouse to equal the source',
    () =>
      withClient(sourceUrl, (source) =>
        withClient(warehouseUrl, async (warehouse) => {
          last = await verifyWarehouse(source, warehouse);
          return last.ok ? true : undefined;
        }),
      ),
    120_000,
    500,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${last ? renderVerifyReport(last) : ''}`, { cause: e });
  });
}

/** A local port nothing listens on: connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function designName(url: string, table: string, id: number): Promise<string | undefined> {
  return withClient(url, async (c) => {
    const { rows } = await c.query(`SELECT "design_name" AS v FROM "${table}" WHERE "design_id" = $1`, [id]);
    return rows[0]?.v as string | undefined;
  });
}

it('carries multi-MiB values from source to warehouse byte for byte, snapshot and stream alike', async () => {
  // Prepare: a source whose design 1 already holds a 3 MiB name when capture first starts.
  const sourceUrl = await createTestDatabase('oversized_src');
  const warehouseUrl = await createTestDatabase('oversized_wh');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-oversized-'));
  dataDirs.push(dataDir);
  const inSnapshot = hugeText('snapshot');
  const inStream = hugeText('stream');
  await withClient(sourceUrl, async (c) => {
    await installTotesys(c, { scale: 0.02 });
    await c.query('UPDATE "design" SET "design_name" = $1 WHERE "design_id" = 1', [inSnapshot]);
  });
  expect(Buffer.byteLength(inSnapshot)).toBeGreaterThan(3 * 1024 * 1024);

  // Act: the snapshot, then an UPDATE of design 2 with another 3 MiB name in the stream, then an
  // UPDATE of design 2 that leaves the name alone (sent as unchanged TOAST, merged at load).
  stack = await start({ sourceUrl, warehouseUrl, dataDir, slot: 'oversized' });
  const reached = (id: number, value: string) => async () =>
    (await designName(warehouseUrl, 'dim_design', id)) === value ? true : undefined;
  try {
    await waitFor('the snapshot’s 3 MiB name in the warehouse', reached(1, inSnapshot), 180_000, 500);
    await withClient(sourceUrl, (c) =>
      c.query('UPDATE "design" SET "design_name" = $1 WHERE "design_id" = 2', [inStream]),
    );
    await waitFor('the streamed 3 MiB name in the warehouse', reached(2, inStream), 120_000, 500);
    await withClient(sourceUrl, (c) =>
      c.query(`UPDATE "design" SET "file_name" = 'renamed.json' WHERE "design_id" = 2`),
    );
    await converged(sourceUrl, warehouseUrl);
  } catch (e) {
    process.stderr.write(`capture said:\n${lines.filter((l) => !l.includes('capture.stats')).join('\n')}\n`);
    throw e;
  }

  // Assess: byte for byte (compared with ===: a jest diff of 3 MiB strings helps nobody).
  for (const [id, value] of [
    [1, inSnapshot],
    [2, inStream],
  ] as const) {
    expect((await designName(sourceUrl, 'design', id)) === value).toBe(true);
    expect((await designName(warehouseUrl, 'dim_design', id)) === value).toBe(true);
  }
  // Both went by claim check: their events are stored under oversized/, and capture said so.
  const s3 = s3ClientFor(stack.s3Endpoint);
  const listed = await s3
    .send(new ListObjectsV2Command({ Bucket: INGESTION_BUCKET, Prefix: `${OVERSIZED_ROOT}/design/` }))
    .finally(() => s3.destroy());
  expect(listed.Contents?.length).toBe(2);
  const stored = lines.filter((l) => l.includes('oversized change stored')).map((l) => JSON.parse(l).change);
  expect(stored).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/^design \(design_id=1\) at epoch \d+, lsn [0-9A-F/]+, seq \d+$/),
      expect.stringMatching(/^design \(design_id=2\) at epoch \d+, lsn [0-9A-F/]+, seq 0$/),
    ]),
  );
});

it('stops capture at an oversized change it cannot store, naming it, confirming nothing past it; a restart delivers it', async () => {
  // Prepare: a running pipeline whose capture cannot reach S3 (a port nothing listens on).
  const sourceUrl = await createTestDatabase('oversized_err_src');
  const warehouseUrl = await createTestDatabase('oversized_err_wh');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-oversized-err-'));
  dataDirs.push(dataDir);
  const names = { sourceUrl, warehouseUrl, dataDir, slot: 'oversized_err' };
  await withClient(sourceUrl, (c) => installTotesys(c, { scale: 0.02 }));
  await stack?.stop();
  lines.length = 0;
  stack = await start(names, { TOTES_S3_ENDPOINT: `http://127.0.0.1:${await closedPort()}` });
  await converged(sourceUrl, warehouseUrl);
  // Act: a 3 MiB name for design 3.
  const value = hugeText('unreachable');
  await withClient(sourceUrl, (c) =>
    c.query('UPDATE "design" SET "design_name" = $1 WHERE "design_id" = 3', [value]),
  );

  // Assess: capture fails naming table, key and position, and the slot is not confirmed past the change.
  const failure = await waitFor(
    'capture to fail on the oversized change',
    async () => lines.find((l) => l.includes('could not store the oversized change')),
    120_000,
    200,
  );
  expect(failure).toMatch(
    /could not store the oversized change design \(design_id=3\) at epoch \d+, lsn [0-9A-F]+\/[0-9A-F]+, seq 0 at s3:\/\/totes-ingestion\/oversized\/design\/[0-9a-f]{64}\.json/,
  );
  // The change's own position: its transaction's commit LSN, which the slot must not pass.
  const commitLsn = /lsn ([0-9A-F]+\/[0-9A-F]+), seq 0/.exec(failure)![1];
  const confirmedPast = async () =>
    withClient(sourceUrl, async (c) => {
      const { rows } = await c.query(
        `SELECT confirmed_flush_lsn > $1::pg_lsn AS past FROM pg_replication_slots WHERE slot_name = 'slot_oversized_err'`,
        [commitLsn],
      );
      return rows[0].past as boolean;
    });
  // Another restart by the supervisor fails the same way: still nothing confirmed past the change.
  await waitFor(
    'a second failure on the same change',
    async () =>
      lines.filter((l) => l.includes('could not store the oversized change')).length >= 2 ? true : undefined,
    120_000,
    200,
  );
  expect(await confirmedPast()).toBe(false);
  expect((await designName(warehouseUrl, 'dim_design', 3)) === value).toBe(false);

  // Act: capture restarted with S3 reachable (the stack's own endpoint).
  await stack.stop();
  stack = await start(names);

  // Assess: the change arrives whole, and the slot moves on.
  await waitFor(
    'the 3 MiB name in the warehouse',
    async () => ((await designName(warehouseUrl, 'dim_design', 3)) === value ? true : undefined),
    180_000,
    500,
  );
  await converged(sourceUrl, warehouseUrl);
  await waitFor(
    'the slot confirmed past the change',
    async () => ((await confirmedPast()) ? true : undefined),
    60_000,
    200,
  );
});
