import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';

/**
 * A secret named by its complete ARN (with the six random characters Secrets Manager appends): a
 * partial ARN cannot be told apart from a name that ends in a dash and six letters, and granting on
 * the wrong form denies every read.
 */
export function importSecret(scope: Construct, id: string, arn: string): secretsmanager.ISecret {
  return secretsmanager.Secret.fromSecretCompleteArn(scope, id, arn);
}
