/**
 * The one model of outstanding work, shared by everything that decides whether an object should be
 * sent through a stage again: the reconciler (which finds objects a stage never finished), the
 * redrive of dead letters (which decides, message by message, whether to send it again or drop it),
 * and quarantine (which says an object must not be sent again as it is).
 *
 * A unit of work is one VERSION of one object for one stage: `transform` for a CSV object in the
 * ingestion bucket, `load` for a Parquet object in the processed bucket. Its state is decided from
 * facts gathered elsewhere (bucket listings, the warehouse's `load_log`, quarantine marks):
 *
 * - `done`: the stage finished this version (transform: the key's Parquet output, or nothing to
 *   produce; load: a `load_log` row of the key and this ETag). Done wins over everything: a
 *   corrected object that loaded is done.
 * - `quarantined`: a quarantine mark covers THIS version — never sent again, so a quarantined
 *   object cannot loop through a stage, whoever re-drives.
 * - `in-flight`: younger than the grace period; its event may still be on its way or retrying.
 * - `outstanding`: none of these; it needs sending again.
 *
 * Keying (the part quarantine relies on): by content, not only by key.
 * - Done-ness is recorded either for a key in every version (transform: its output key is derived
 *   from the input key and never overwritten) or for one version (load: `load_log` holds the
 *   object key WITH the ETag of the bytes loaded, migration 006). So a corrected object that
 *   replaced a loaded one under the same key (a new ETag) is not done: it is outstanding, is
 *   re-driven, and loads. A `load_log` row without an ETag (loaded before versions were recorded)
 *   counts for every version of its key.
 * - A quarantine mark is keyed by (stage, object key, content): it records the object's S3 ETag
 *   (content identity: S3 objects are written once by PutObject, so equal bytes give an equal ETag)
 *   and covers only that version. An object replaced by a corrected version (a new ETag) is
 *   outstanding again, is re-driven and loads; the same bytes stay quarantined. When the ETag is not
 *   known, the mark covers the versions written no later than it was made (`markedAt`), so an
 *   object written after the quarantine is again a corrected one. Releasing a mark (`totes
 *   quarantine retry`, after a code fix makes the same bytes loadable) makes the object outstanding
 *   again; if it fails again, the stage marks it again, so nothing loops.
 *
 * Pure: no I/O, no clock (`now` comes in with the facts).
 */

export const WORK_STAGES = ['transform', 'load'] as const;
export type WorkStage = (typeof WORK_STAGES)[number];

export const WORK_STATES = ['done', 'quarantined', 'in-flight', 'outstanding'] as const;
export type WorkState = (typeof WORK_STATES)[number];

/** One version of one object, as a stage would receive it. */
export interface WorkItem {
  stage: WorkStage;
  bucket: string;
  key: string;
  /** Content identity: the S3 ETag without its quotes; null when unknown. */
  eTag: string | null;
  lastModified: Date;
}

/** "This object cannot be processed as it is": written by a stage (or an operator). */
export interface QuarantineMark {
  stage: WorkStage;
  key: string;
  /** The ETag of the version that was quarantined; null when unknown. */
  eTag: string | null;
  markedAt: Date;
}

export interface WorkFacts {
  /**
   * What the stage has finished: `workKey(stage, key)` for every version of a key,
   * `versionKey(stage, key, eTag)` for one version.
   */
  done: ReadonlySet<string>;
  /** Quarantine marks by `workKey(stage, key)`. */
  quarantined: ReadonlyMap<string, QuarantineMark>;
  now: Date;
  /** Objects younger than this are in flight, not outstanding (0: nothing is in flight). */
  graceMs: number;
}

/** The key done-ness and marks are looked up by. */
export function workKey(stage: WorkStage, key: string): string {
  return `${stage}:${key}`;
}

/** The key one finished VERSION of an object is recorded under in `WorkFacts.done`. */
export function versionKey(stage: WorkStage, key: string, eTag: string): string {
  return `${workKey(stage, key)}@${eTag}`;
}

/** Has the stage finished this version of the object (or the key in every version)? */
export function isDone(item: WorkItem, done: ReadonlySet<string>): boolean {
  return (
    done.has(workKey(item.stage, item.key)) ||
    (item.eTag !== null && done.has(versionKey(item.stage, item.key, item.eTag)))
  );
}

/** S3 quotes ETags in listings and headers (`"9b2c…"`); events carry them bare. */
export function normalizeETag(raw: string | null | undefined): string | null {
  if (!raw) return null;
  const bare = raw.replace(/^W\//, '').replace(/^"|"$/g, '');
  return bare === '' ? null : bare;
}

/** Does this mark cover this version of the object? (See "Keying" above.) */
export function markCovers(mark: QuarantineMark, item: WorkItem): boolean {
  if (mark.stage !== item.stage || mark.key !== item.key) return false;
  if (mark.eTag !== null && item.eTag !== null) return mark.eTag === item.eTag;
  return item.lastModified.getTime() <= mark.markedAt.getTime();
}

export function classifyWork(item: WorkItem, facts: WorkFacts): WorkState {
  if (isDone(item, facts.done)) return 'done';
  const mark = facts.quarantined.get(workKey(item.stage, item.key));
  if (mark && markCovers(mark, item)) return 'quarantined';
  if (facts.now.getTime() - item.lastModified.getTime() < facts.graceMs) return 'in-flight';
  return 'outstanding';
}

export type WorkCounts = Record<WorkStage, Record<WorkState, number>>;

export interface WorkSummary {
  /** Oldest first: the order to send them again in. */
  outstanding: WorkItem[];
  counts: WorkCounts;
}

export function emptyWorkCounts(): WorkCounts {
  const zero = () => ({ done: 0, quarantined: 0, 'in-flight': 0, outstanding: 0 });
  return { transform: zero(), load: zero() };
}

/** Classifies every item; the same object listed twice counts once. */
export function summarizeWork(items: Iterable<WorkItem>, facts: WorkFacts): WorkSummary {
  const counts = emptyWorkCounts();
  const outstanding: WorkItem[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const id = versionKey(item.stage, item.key, item.eTag ?? '');
    if (seen.has(id)) continue;
    seen.add(id);
    const state = classifyWork(item, facts);
    counts[item.stage][state] += 1;
    if (state === 'outstanding') outstanding.push(item);
  }
  outstanding.sort(
    (a, b) => a.lastModified.getTime() - b.lastModified.getTime() || a.key.localeCompare(b.key),
  );
  return { outstanding, counts };
}

/**
 * Where a quarantine mark stands now, against the object it marked as it is now (`null`: gone):
 * - `quarantined`: the mark covers the current version; it waits for a fix and `retry`;
 * - `corrected`: a corrected version replaced the marked one; it is outstanding, not quarantined
 *   (the reconciler re-drives it), and loads;
 * - `done`: the stage finished the current version since; the mark is history;
 * - `gone`: the object no longer exists; nothing can be re-driven.
 */
export const MARK_STATUSES = ['quarantined', 'corrected', 'done', 'gone'] as const;
export type MarkStatus = (typeof MARK_STATUSES)[number];

export function markStatus(
  mark: QuarantineMark,
  current: WorkItem | null,
  done: ReadonlySet<string>,
): MarkStatus {
  if (current === null) return 'gone';
  if (isDone(current, done)) return 'done';
  return markCovers(mark, current) ? 'quarantined' : 'corrected';
}

/**
 * A dead letter's fate: send it again only if its object is still outstanding. It has used up its
 * retries already, so no grace period applies; done or quarantined objects are dropped.
 */
export function redriveDecision(item: WorkItem, facts: Omit<WorkFacts, 'graceMs'>): 'redrive' | 'drop' {
  return classifyWork(item, { ...facts, graceMs: 0 }) === 'outstanding' ? 'redrive' : 'drop';
}
