import { encodeS3EventKey } from '../../local/s3rver';
import { encodeKeyAsS3Does, s3EventFactory, sqsEventFactory } from '../../test/support/s3-events';
import { decodeS3ObjectKey, isS3TestEvent, parseObjectEvent, S3EventSchema } from './s3-event';

describe('S3 event notifications', () => {
  it.each([
    'totesys/sales_order/schema=0123456789abcdef/2025/02/28/09/totes-1-2025-02-28-09-15-02-abc',
    'a key/with spaces+plus=equals&amp?question#hash',
    'ünïcödé/日本語/😀',
    '%41 is not A',
  ])('decodes %j as S3 encodes it (space as +, %XX)', (key) => {
    expect(decodeS3ObjectKey(encodeKeyAsS3Does(key))).toBe(key);
    expect(decodeS3ObjectKey(encodeS3EventKey(key))).toBe(key);
  });

  it('decodes what S3 sends for the ingestion layout', () => {
    expect(decodeS3ObjectKey('totesys/staff/schema%3D0123456789abcdef/2025/02/28/09/my+file%2B1')).toBe(
      'totesys/staff/schema=0123456789abcdef/2025/02/28/09/my file+1',
    );
    expect(() => decodeS3ObjectKey('bad%E0%A4%A')).toThrow(URIError);
  });

  it('accepts the full notification shape and recognises the test event', () => {
    const event = s3EventFactory([
      { bucket: 'b', key: 'k 1' },
      { bucket: 'b', key: 'k2', eventName: 'ObjectCreated:Copy' },
    ]);
    const parsed = S3EventSchema.parse(event);
    expect(parsed.Records.map((r) => [r.eventName, r.s3.object.key])).toEqual([
      ['ObjectCreated:Put', 'k+1'],
      ['ObjectCreated:Copy', 'k2'],
    ]);
    expect(parsed.Records[0].s3.object.sequencer! < parsed.Records[1].s3.object.sequencer!).toBe(true);
    expect(isS3TestEvent({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: 'b' })).toBe(true);
    expect(isS3TestEvent(event)).toBe(false);
    expect(isS3TestEvent(null)).toBe(false);
  });

  it('reads both envelopes: S3 directly, and SQS messages wrapping S3 notifications', () => {
    const direct = s3EventFactory({ bucket: 'b', key: 'k' });
    expect(parseObjectEvent(direct)).toEqual({ kind: 's3', event: S3EventSchema.parse(direct) });
    expect(parseObjectEvent({ Service: 'Amazon S3', Event: 's3:TestEvent' })).toEqual({
      kind: 's3-test-event',
    });
    expect(parseObjectEvent({ Records: [{ nope: 1 }] })).toMatchObject({ kind: 'invalid' });

    const queued = sqsEventFactory(
      [direct, { Service: 'Amazon S3', Event: 's3:TestEvent' }, '{"Records":[{}]}', '{'],
      { receiveCount: 4 },
    );
    const parsed = parseObjectEvent(queued);
    expect(parsed.kind).toBe('sqs');
    const messages = parsed.kind === 'sqs' ? parsed.messages : [];
    expect(messages.map((m) => [m.messageId, m.kind, m.receiveCount, m.receiptHandle])).toEqual(
      queued.Records.map((r, i) => [
        r.messageId,
        ['objects', 'test-event', 'invalid', 'invalid'][i],
        4,
        r.receiptHandle,
      ]),
    );
    expect(messages[0]).toMatchObject({ event: { Records: [{ s3: { object: { key: 'k' } } }] } });
    expect(messages[3]).toMatchObject({ issues: ['body: not JSON'] });
    expect(parseObjectEvent({ Records: [{ eventSource: 'aws:sqs' }] })).toMatchObject({ kind: 'invalid' });
  });
});
