import { captureSettingsFromEnv, ConfigError, sourceUrlFromSecret } from './config';

const base = { TOTES_SOURCE_URL: 'postgres://u:p@h/db', TOTES_STREAM_NAME: 'changes' };

describe('captureSettingsFromEnv', () => {
  it('applies the defaults: the 11 totesys tables, totes_pub / totes_slot, a local state file', () => {
    const s = captureSettingsFromEnv(base);
    expect(s.tables).toHaveLength(11);
    expect(s).toMatchObject({
      publication: 'totes_pub',
      slot: 'totes_slot',
      schema: 'public',
      kinesisEndpoint: null,
      oversizedBucket: null,
      s3Endpoint: null,
      state: { kind: 'file', path: '.totes/capture-state.json' },
      heartbeatIntervalMs: 10_000,
      lingerMs: 20,
      busyLingerMs: 100,
      logLevel: 'info',
      recordCompression: 'gzip',
    });
    // A linger set above the busy default makes the busy one as long.
    expect(captureSettingsFromEnv({ ...base, TOTES_LINGER_MS: '150' })).toMatchObject({
      lingerMs: 150,
      busyLingerMs: 150,
    });
  });

  it('reads every override', () => {
    const s = captureSettingsFromEnv({
      ...base,
      TOTES_TABLES: 'a, b',
      TOTES_SLOT: 's',
      TOTES_PUBLICATION: 'p',
      TOTES_KINESIS_ENDPOINT: 'http://127.0.0.1:4567',
      TOTES_OVERSIZED_BUCKET: 'ingestion',
      TOTES_S3_ENDPOINT: 'http://127.0.0.1:4568',
      TOTES_STATE_S3_URI: 's3://bucket/capture/state.json',
      TOTES_HEARTBEAT_INTERVAL_MS: '500',
      TOTES_LINGER_MS: '10',
      TOTES_BUSY_LINGER_MS: '250',
      TOTES_LOG_LEVEL: 'debug',
      TOTES_RECORD_COMPRESSION: 'none',
      AWS_REGION: 'eu-west-2',
    });
    expect(s).toMatchObject({
      tables: ['a', 'b'],
      slot: 's',
      publication: 'p',
      kinesisEndpoint: 'http://127.0.0.1:4567',
      oversizedBucket: 'ingestion',
      s3Endpoint: 'http://127.0.0.1:4568',
      state: { kind: 's3', bucket: 'bucket', key: 'capture/state.json' },
      heartbeatIntervalMs: 500,
      lingerMs: 10,
      busyLingerMs: 250,
      logLevel: 'debug',
      recordCompression: 'none',
      region: 'eu-west-2',
    });
  });

  it('says what is missing or malformed', () => {
    expect(() => captureSettingsFromEnv({ TOTES_STREAM_NAME: 'x' })).toThrow(/TOTES_SOURCE_URL/);
    expect(() => captureSettingsFromEnv({ TOTES_SOURCE_URL: 'postgres://h/db' })).toThrow(
      /TOTES_STREAM_NAME/,
    );
    expect(() => captureSettingsFromEnv({ ...base, TOTES_LINGER_MS: '-1' })).toThrow(ConfigError);
    expect(() =>
      captureSettingsFromEnv({ ...base, TOTES_LINGER_MS: '50', TOTES_BUSY_LINGER_MS: '30' }),
    ).toThrow(/TOTES_BUSY_LINGER_MS \(30\) must be at least TOTES_LINGER_MS \(50\)/);
    expect(() => captureSettingsFromEnv({ ...base, TOTES_STATE_S3_URI: 'bucket/key' })).toThrow(
      /s3:\/\/bucket\/key/,
    );
    expect(() => captureSettingsFromEnv({ ...base, TOTES_LOG_LEVEL: 'loud' })).toThrow(/TOTES_LOG_LEVEL/);
    expect(() => captureSettingsFromEnv({ ...base, TOTES_RECORD_COMPRESSION: 'zstd' })).toThrow(
      'TOTES_RECORD_COMPRESSION must be gzip or none, got "zstd"',
    );
  });
});

describe('sourceUrlFromSecret', () => {
  it('takes a URL as it is', () => {
    expect(sourceUrlFromSecret(' postgres://u:p@h:5432/db ')).toBe('postgres://u:p@h:5432/db');
  });

  it('builds a URL from an RDS-style secret, escaping the password', () => {
    const url = sourceUrlFromSecret(
      JSON.stringify({
        host: 'db.example',
        port: 5433,
        username: 'cdc',
        password: 'p@ss/w:rd',
        dbname: 'totesys',
      }),
    );
    const u = new URL(url);
    expect([u.hostname, u.port, u.username, decodeURIComponent(u.password), u.pathname]).toEqual([
      'db.example',
      '5433',
      'cdc',
      'p@ss/w:rd',
      '/totesys',
    ]);
  });

  it('rejects secrets it cannot use', () => {
    expect(() => sourceUrlFromSecret('hunter2')).toThrow(/neither/);
    expect(() => sourceUrlFromSecret('{"host":"h"}')).toThrow(/username and password/);
  });
});
