/* eslint-disable security/detect-non-literal-fs-filename -- runtime.json under the operator's --data-dir */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * `DIR/runtime.json`: how other `totes` commands find the local stack that `totes up` runs on data
 * directory DIR (its ports change on every start). `totes up` writes it once everything listens and
 * removes it on a clean shutdown; after a crash it stays behind, so readers check `pid` is alive.
 */
export const RUNTIME_INFO_FILE = 'runtime.json';

export const RuntimeInfoSchema = z.object({
  /** kinesalite, e.g. `http://127.0.0.1:4567`. */
  kinesisEndpoint: z.url(),
  /** The change stream capture writes to. */
  streamName: z.string().min(1),
  /** s3rver, e.g. `http://127.0.0.1:4568`. */
  s3Endpoint: z.url(),
  /** CSV objects from the delivery stream. */
  ingestionBucket: z.string().min(3),
  /** Parquet objects from the transform stage. */
  processedBucket: z.string().min(3),
  /** The `totes up` process; absent when written by something that is not a process of its own. */
  pid: z.number().int().positive().optional(),
  startedAt: z.iso.datetime().optional(),
});
export type RuntimeInfo = z.infer<typeof RuntimeInfoSchema>;

/** Base class of every error this module throws. */
export class RuntimeInfoError extends Error {
  override name = 'RuntimeInfoError';
}

export class RuntimeInfoNotFoundError extends RuntimeInfoError {
  override name = 'RuntimeInfoNotFoundError';
  constructor(readonly file: string) {
    super(`${file} does not exist: is \`totes up\` running with this data directory?`);
  }
}

export class InvalidRuntimeInfoError extends RuntimeInfoError {
  override name = 'InvalidRuntimeInfoError';
  constructor(
    readonly file: string,
    readonly issues: string[],
    options?: { cause: unknown },
  ) {
    super(`${file} is not a totes runtime file: ${issues.slice(0, 3).join('; ')}`, options);
  }
}

/** The file names a process that is gone: `totes up` crashed or was killed. */
export class StaleRuntimeInfoError extends RuntimeInfoError {
  override name = 'StaleRuntimeInfoError';
  constructor(
    readonly file: string,
    readonly pid: number,
  ) {
    super(`${file} names process ${pid}, which is not running: start \`totes up\` again`);
  }
}

export function runtimeInfoPath(dataDir: string): string {
  return path.join(dataDir, RUNTIME_INFO_FILE);
}

/** Written atomically (temp file, fsync, rename): a reader sees the old file or the new, never half. */
export async function writeRuntimeInfo(dataDir: string, info: RuntimeInfo): Promise<string> {
  const file = runtimeInfoPath(dataDir);
  const text = `${JSON.stringify(RuntimeInfoSchema.parse(info), null, 2)}\n`;
  await fs.promises.mkdir(dataDir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await fs.promises.open(tmp, 'w');
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.promises.rename(tmp, file);
  return file;
}

export async function readRuntimeInfo(dataDir: string): Promise<RuntimeInfo> {
  const file = runtimeInfoPath(dataDir);
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new RuntimeInfoNotFoundError(file);
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InvalidRuntimeInfoError(file, ['not JSON'], { cause: e });
  }
  const parsed = RuntimeInfoSchema.safeParse(json);
  if (!parsed.success)
    throw new InvalidRuntimeInfoError(
      file,
      parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    );
  if (parsed.data.pid !== undefined && !isProcessAlive(parsed.data.pid))
    throw new StaleRuntimeInfoError(file, parsed.data.pid);
  return parsed.data;
}

/** Removes the file, but only if it still describes `pid` (a newer `totes up` may have replaced it). */
export async function removeRuntimeInfo(dataDir: string, pid = process.pid): Promise<void> {
  const file = runtimeInfoPath(dataDir);
  try {
    const current = RuntimeInfoSchema.safeParse(JSON.parse(await fs.promises.readFile(file, 'utf8')));
    if (current.success && current.data.pid !== undefined && current.data.pid !== pid) return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
  }
  await fs.promises.rm(file, { force: true });
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
