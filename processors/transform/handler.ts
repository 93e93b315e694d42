import { S3Client } from '@aws-sdk/client-s3';
import { createLogger, type LogLevel } from '../../core/logger';
import { metricsFor } from '../shared/metrics';
import { createTransformHandler, readTransformConfig } from './create-handler';
import { awsClientConfig } from '../../aws/request-handler';

/**
 * Lambda entry for the transform stage (ObjectCreated in the ingestion bucket). Configuration is
 * read and the S3 client built once, at cold start: a missing PROCESSED_BUCKET fails the first
 * invocation loudly. Everything else lives in create-handler.ts, which the local pipeline and the
 * tests call with their own clients.
 */
const config = readTransformConfig(process.env);

const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'] satisfies LogLevel[];
const logger = createLogger({
  service: 'transform',
  level: LEVELS.includes(process.env.LOG_LEVEL ?? '') ? (process.env.LOG_LEVEL as LogLevel) : 'info',
});

const s3 = new S3Client(awsClientConfig());

export const handler = createTransformHandler({
  s3,
  processedBucket: config.processedBucket,
  logger,
  metrics: metricsFor({ stage: 'transform' }),
});
