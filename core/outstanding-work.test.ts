import {
  classifyWork,
  markCovers,
  markStatus,
  normalizeETag,
  redriveDecision,
  summarizeWork,
  versionKey,
  workKey,
  type QuarantineMark,
  type WorkFacts,
  type WorkItem,
} from './outstanding-work';

const NOW = new Date('2025-02-28T12:00:00.000Z');
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);

const item = (overrides: Partial<WorkItem> = {}): WorkItem => ({
  stage: 'load',
  bucket: 'processed',
  key: 'dim_staff/2025/02/28/09/abc.parquet',
  eTag: 'etag-1',
  lastModified: minutesAgo(60),
  ...overrides,
});

const mark = (overrides: Partial<QuarantineMark> = {}): QuarantineMark => ({
  stage: 'load',
  key: 'dim_staff/2025/02/28/09/abc.parquet',
  eTag: 'etag-1',
  markedAt: minutesAgo(50),
  ...overrides,
});

const facts = (overrides: Partial<WorkFacts> = {}): WorkFacts => ({
  done: new Set(),
  quarantined: new Map(),
  now: NOW,
  graceMs: 15 * 60_000,
  ...overrides,
});

const marked = (...marks: QuarantineMark[]) => new Map(marks.map((m) => [workKey(m.stage, m.key), m]));

describe('outstanding work', () => {
  it('is outstanding when not done, not quarantined and past the grace period', () => {
    expect(classifyWork(item(), facts())).toBe('outstanding');
    expect(classifyWork(item({ lastModified: minutesAgo(5) }), facts())).toBe('in-flight');
    expect(classifyWork(item({ lastModified: minutesAgo(5) }), facts({ graceMs: 0 }))).toBe('outstanding');
  });

  it('is done per (stage, key): a load_log row says nothing about the transform of the same key', () => {
    const done = new Set([workKey('load', item().key)]);

    expect(classifyWork(item(), facts({ done }))).toBe('done');
    expect(classifyWork(item({ stage: 'transform' }), facts({ done }))).toBe('outstanding');
  });

  it('is done per version for load: a corrected object under a loaded key is outstanding until it loads', () => {
    const done = new Set([versionKey('load', item().key, 'etag-1')]);
    const corrected = item({ eTag: 'etag-2' });

    expect(classifyWork(item(), facts({ done }))).toBe('done');
    expect(classifyWork(corrected, facts({ done }))).toBe('outstanding');
    expect(classifyWork(item({ eTag: null }), facts({ done }))).toBe('outstanding');
    expect(
      classifyWork(corrected, facts({ done: new Set([...done, versionKey('load', item().key, 'etag-2')]) })),
    ).toBe('done');
    // A key-wide record (transform's output; a load_log row from before versions) covers every version.
    expect(classifyWork(corrected, facts({ done: new Set([workKey('load', item().key)]) }))).toBe('done');
  });

  it('says where a mark stands against the object as it is now', () => {
    const none = new Set<string>();
    expect(markStatus(mark(), item(), none)).toBe('quarantined');
    expect(markStatus(mark(), item({ eTag: 'etag-2' }), none)).toBe('corrected');
    expect(markStatus(mark(), item(), new Set([versionKey('load', item().key, 'etag-1')]))).toBe('done');
    expect(markStatus(mark(), null, none)).toBe('gone');
  });

  it('never re-drives the quarantined version, but re-drives a corrected one (a new ETag)', () => {
    const quarantined = marked(mark());

    expect(classifyWork(item(), facts({ quarantined }))).toBe('quarantined');
    expect(classifyWork(item({ eTag: 'etag-2', lastModified: minutesAgo(20) }), facts({ quarantined }))).toBe(
      'outstanding',
    );
    // …and once the corrected one loaded, it is done, mark or not.
    const done = new Set([workKey('load', item().key)]);
    expect(classifyWork(item({ eTag: 'etag-2' }), facts({ quarantined, done }))).toBe('done');
  });

  it('without an ETag, a mark covers what was written before it, not what was written after', () => {
    const quarantined = marked(mark({ eTag: null }));

    expect(classifyWork(item({ lastModified: minutesAgo(60) }), facts({ quarantined }))).toBe('quarantined');
    expect(classifyWork(item({ lastModified: minutesAgo(40) }), facts({ quarantined }))).toBe('outstanding');
    expect(markCovers(mark({ eTag: 'etag-1' }), item({ eTag: null, lastModified: minutesAgo(60) }))).toBe(
      true,
    );
    expect(markCovers(mark({ stage: 'transform' }), item())).toBe(false);
  });

  it('summarizes: counts per stage and state, outstanding oldest first, duplicates once', () => {
    const a = item({ key: 'a.parquet', lastModified: minutesAgo(30) });
    const b = item({ key: 'b.parquet', lastModified: minutesAgo(90) });
    const t = item({ stage: 'transform', bucket: 'ingestion', key: 'totesys/x.csv' });
    const summary = summarizeWork(
      [a, b, a, t, item({ key: 'young.parquet', lastModified: minutesAgo(1) })],
      facts({ done: new Set([workKey('transform', 'totesys/x.csv')]) }),
    );

    expect(summary.outstanding.map((i) => i.key)).toEqual(['b.parquet', 'a.parquet']);
    expect(summary.counts).toEqual({
      transform: { done: 1, quarantined: 0, 'in-flight': 0, outstanding: 0 },
      load: { done: 0, quarantined: 0, 'in-flight': 1, outstanding: 2 },
    });
  });

  it('redrives a dead letter only when its object is still outstanding, whatever its age', () => {
    const young = item({ lastModified: minutesAgo(1) });

    expect(redriveDecision(young, facts())).toBe('redrive');
    expect(redriveDecision(young, facts({ quarantined: marked(mark()) }))).toBe('drop');
    expect(redriveDecision(young, facts({ done: new Set([workKey('load', young.key)]) }))).toBe('drop');
  });

  it('reads ETags as S3 writes them', () => {
    expect(normalizeETag('"9b2cf535f27731c974343645a3985328"')).toBe('9b2cf535f27731c974343645a3985328');
    expect(normalizeETag('W/"abc"')).toBe('abc');
    expect(normalizeETag('abc-2')).toBe('abc-2');
    expect(normalizeETag('""')).toBeNull();
    expect(normalizeETag(undefined)).toBeNull();
  });
});
