import * as load from './index';

it('names the load stage API', () => {
  for (const value of Object.values(load)) expect(value).toBeDefined();
  expect(Object.keys(load).sort()).toEqual([
    'InvalidS3EventError',
    'LOAD_QUARANTINE_ROOT',
    'LoadRetryableError',
    'MalformedObjectError',
    'WarehouseDataError',
    'WarehouseUnavailableError',
    'applyBatch',
    'createLoadHandler',
    'loadQuarantineKeyFor',
    'migrateWarehouse',
    'prepareBatch',
    'readLoadConfig',
    'readMigrations',
    'renderVerifyReport',
    'resolveWarehouseConnection',
    'verifyWarehouse',
  ]);
});
