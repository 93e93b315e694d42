import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Acknowledges (suppresses) a cdk-nag finding on `scope` and everything under it, with the reason it
 * is acceptable; the reason is kept in the synthesized validation report. With `findings`, only
 * those findings of the rule (cdk-nag's `Rule[Finding]` ids, e.g. `Resource::*`) are acknowledged,
 * so a new, different wildcard still fails synthesis.
 */
export function acknowledge(scope: IConstruct, rule: string, reason: string, findings?: string[]): void {
  const validations = Validations.of(scope);
  if (!findings) validations.acknowledge({ id: rule, reason });
  else for (const finding of findings) validations.acknowledge({ id: `${rule}[${finding}]`, reason });
}

/**
 * The `Resource::…` finding id cdk-nag's IAM5 reports for a resource ARN: literal text kept, `Ref`
 * written `<Name>` and `Fn::GetAtt` written `<Resource.Attribute>`.
 */
export function iamResourceFinding(scope: IConstruct, arn: string): string {
  return `Resource::${flatten(Stack.of(scope).resolve(arn))}`;
}

function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if (v && typeof v === 'object') {
    if (typeof v.Ref === 'string') return `<${v.Ref}>`;
    const getAtt = v['Fn::GetAtt'];
    if (Array.isArray(getAtt)) return `<${getAtt.join('.')}>`;
    const join = v['Fn::Join'];
    if (Array.isArray(join) && typeof join[0] === 'string' && Array.isArray(join[1]))
      return (join[1] as unknown[]).map(flatten).join(join[0]);
  }
  throw new Error(`cannot name the IAM finding for ${JSON.stringify(value)}`);
}
