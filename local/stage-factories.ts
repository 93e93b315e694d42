import { Pool, type PoolClient } from 'pg';
import type { Logger } from '../core/logger';
import { createHandler as createFirehoseTransform } from '../processors/firehose-transform/create-handler';
import { createLoadHandler } from '../processors/load/create-handler';
import type { MetricSet } from '../processors/shared/metrics';
import { createTransformHandler } from '../processors/transform/create-handler';
import { s3ClientFor } from './s3rver';

/**
 * The Lambda stages as a stage worker (local/stage-worker.ts) builds them: each factory gets
 * plain, cloneable options (endpoints and names, never clients) and the worker's logger and
 * metrics, and builds the handler with the stage's own exported factory, as the Lambda entry point
 * does. `close` releases what the stage opened (clients, the warehouse pool).
 */
export interface StageContext {
  logger: Logger;
  metrics: () => MetricSet;
}

export interface BuiltStage {
  handler: (event: unknown) => Promise<unknown>;
  close(): Promise<void>;
}

export type StageFactory<O> = (options: O, context: StageContext) => BuiltStage;

export interface TransformStageOptions {
  s3Endpoint: string;
  processedBucket: string;
}

export const transformStage: StageFactory<TransformStageOptions> = (options, context) => {
  const s3 = s3ClientFor(options.s3Endpoint);
  return {
    handler: createTransformHandler({
      s3,
      processedBucket: options.processedBucket,
      logger: context.logger,
      metrics: context.metrics,
    }),
    close: async () => s3.destroy(),
  };
};

export interface LoadStageOptions {
  s3Endpoint: string;
  warehouseUrl: string;
  /** Warehouse connections of this worker: one per invocation it may run at once. */
  connections: number;
}

export const loadStage: StageFactory<LoadStageOptions> = (options, context) => {
  const s3 = s3ClientFor(options.s3Endpoint);
  const pool = new Pool({ connectionString: options.warehouseUrl, max: options.connections });
  // An idle pooled connection the warehouse ends (restart, failover, idle timeout) is reported as an
  // 'error' event, which without a listener kills the process. The pool drops that client; the next
  // load connects again, and a load that failed mid-way is retried from the queue.
  pool.on('error', (err) =>
    context.logger.warn('an idle warehouse connection ended; it is replaced', { err }),
  );
  // pool.end() resolves once its clients are asked to end, not once they have: wait for each
  // connection to close, or the warehouse, stopped next, ends them first (a warning on every stop).
  const connections = new Set<PoolClient>();
  pool.on('connect', (c) => {
    connections.add(c);
    c.once('end', () => connections.delete(c));
  });
  return {
    handler: createLoadHandler({ s3, warehouse: pool, logger: context.logger, metrics: context.metrics }),
    close: async () => {
      const closed = [...connections].map((c) => new Promise((resolve) => c.once('end', resolve)));
      await pool.end();
      await Promise.all(closed);
      s3.destroy();
    },
  };
};

export interface FirehoseTransformStageOptions {
  s3Endpoint: string;
  /** The ingestion bucket (schema objects, oversized changes). */
  bucket: string;
  /** Fast mode: each record's lines start with its layout record. */
  mixedObjects: boolean;
}

/** The Firehose record transformation, which the local delivery stream invokes synchronously. */
export const firehoseTransformStage: StageFactory<FirehoseTransformStageOptions> = (options, context) => {
  const s3 = s3ClientFor(options.s3Endpoint);
  return {
    handler: createFirehoseTransform({
      s3,
      bucket: options.bucket,
      logger: context.logger,
      mixedObjects: options.mixedObjects,
    }) as (event: unknown) => Promise<unknown>,
    close: async () => s3.destroy(),
  };
};
