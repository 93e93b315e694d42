import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import fs from 'node:fs';
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
let dataDir: string;

afterAll(async () => {
  await stack?.stop();
  if (dataDir) removeDataDir(dataDir);
});

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
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-oversized-'));
  const inSnapshot = hugeText('snapshot');
  const inStream = hugeText('stream');
  await withClient(sourceUrl, async (c) => {
    await installTotesys(c, { scale: 0.02 });
    await c.query('UPDATE "design" SET "design_name" = $1 WHERE "design_id" = 1', [inSnapshot]);
  });
  expect(Buffer.byteLength(inSnapshot)).toBeGreaterThan(3 * 1024 * 1024);

  // Act: the snapshot, then an UPDATE of design 2 with another 3 MiB name in the stream, then an
  // UPDATE of design 2 that leaves the name alone (sent as unchanged TOAST, merged at load).
  stack = await startLocalStack({
    dataDir,
    sourceUrl,
    warehouseUrl,
    logger: silentLogger,
    bufferIntervalMs: 300,
    heartbeatIntervalMs: 1000,
    captureEnv: { TOTES_SLOT: 'slot_oversized', TOTES_PUBLICATION: 'pub_oversized' },
    onCaptureOutput: (line) => lines.push(line),
  });
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
