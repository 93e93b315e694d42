import { S3Client } from '@aws-sdk/client-s3';
import { lambdaLogger } from '../shared/lambda-logger';
import { createHandler, readTransformConfig } from './create-handler';
import { awsClientConfig } from '../../aws/request-handler';

/**
 * Lambda entry for the Firehose record transformation. Configuration is read and the S3 client built
 * once, at cold start: a missing INGESTION_BUCKET fails the first invocation loudly instead of
 * producing data without schema objects. Everything else lives in create-handler.ts, which the local
 * delivery stream and the tests call with their own clients.
 */
const config = readTransformConfig(process.env);

// Powertools Logger (processors/shared/lambda-logger.ts): level from LOG_LEVEL, set by the stack.
const logger = lambdaLogger('firehose-transform');

const s3 = new S3Client(awsClientConfig());

export const handler = createHandler({ s3, bucket: config.ingestionBucket, logger });
