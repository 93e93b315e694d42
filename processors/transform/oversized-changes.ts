import type { Change } from '../../core/change-event';
import type { SchemaObject } from '../../core/csv-codec';
import { describeChange, InvalidOversizedObjectError, resolvePointer } from '../../core/oversized-change';

/**
 * Transform's half of the claim check (core/oversized-change.ts): a CSV object may hold pointer
 * lines (`ref`) for changes too big for one stream record; each is replaced, before mapping, by the
 * whole change capture stored in the ingestion bucket. Nothing after transform ever sees a pointer.
 *
 * A stored event that is missing or does not match its pointer throws InvalidOversizedObjectError,
 * whose reason names table, key and position: the object is unreadable (the caller quarantines it with the reason, naming table, key and position; re-driving it after the
 * event is restored works); an S3 error on the way is the caller's retryable failure.
 */

export interface PointerSource {
  /**
   * The stored event's bytes. Throws when it cannot be read; `isMissing(e)` tells a missing object
   * (permanent) from anything else (rethrown as is: retryable).
   */
  read(key: string): Promise<Uint8Array>;
  isMissing(e: unknown): boolean;
  /** `s3://bucket`, for reasons. */
  location: string;
}

/** The changes with every pointer replaced by the change it stands for, in the same order. */
export async function resolveOversizedChanges(
  changes: Change[],
  schema: SchemaObject,
  source: PointerSource,
): Promise<Change[]> {
  if (!changes.some((c) => c.ref !== undefined)) return changes;
  const out: Change[] = [];
  for (const change of changes) {
    if (change.ref === undefined) {
      out.push(change);
      continue;
    }
    const what = `oversized change ${describeChange(schema.table, schema.columns, change)}`;
    let body: Uint8Array;
    try {
      body = await source.read(change.ref);
    } catch (e) {
      if (source.isMissing(e))
        throw new InvalidOversizedObjectError(
          `${what}: its event ${source.location}/${change.ref} does not exist`,
          {
            cause: e,
          },
        );
      throw e;
    }
    try {
      out.push(resolvePointer(change, schema, body));
    } catch (e) {
      if (e instanceof InvalidOversizedObjectError)
        throw new InvalidOversizedObjectError(`${what}: ${e.reason}`, { cause: e });
      throw e;
    }
  }
  return out;
}
