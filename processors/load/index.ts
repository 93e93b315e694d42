/** The load stage: Parquet objects of the processed bucket → the warehouse (see README.md). */
export {
  createLoadHandler,
  InvalidS3EventError,
  LOAD_QUARANTINE_ROOT,
  loadQuarantineKeyFor,
  LoadRetryableError,
  type LoadHandlerDeps,
  type LoadObjectOutcome,
  type LoadReport,
} from './create-handler';
export { applyBatch, WarehouseDataError, WarehouseUnavailableError, type ApplyOutcome } from './apply-batch';
export { MalformedObjectError, prepareBatch, type PreparedBatch } from './load-batch';
export { readLoadConfig, resolveWarehouseConnection, type LoadConfig } from './load-config';
export { migrateWarehouse, readMigrations, type MigrationResult } from './migrate';
export { renderVerifyReport, verifyWarehouse, type VerifyReport } from './verify';
