import { S3Client } from '@aws-sdk/client-s3';
import { lambdaLogger } from '../shared/lambda-logger';
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

// Powertools Logger (processors/shared/lambda-logger.ts): level from LOG_LEVEL, set by the stack.
const logger = lambdaLogger('transform');

const s3 = new S3Client(awsClientConfig());

export const handler = createTransformHandler({
  s3,
  processedBucket: config.processedBucket,
  logger,
  metrics: metricsFor({ stage: 'transform' }),
});
