/** The totesys source database: its schema, a deterministic seed, and a running-business simulator. */
export {
  PAYMENT_TYPE_NAMES,
  TRANSACTION_TYPES,
  TOTESYS_COLUMNS,
  TotesysError,
  createTotesysSchema,
  dropTotesysSchema,
  inspectTotesys,
  totesysDdl,
  type TotesysInspection,
} from './schema';
export {
  CHANGE_KINDS,
  generateTotesys,
  totesysRowCounts,
  type ChangeKind,
  type TotesysBatch,
  type TotesysRowMap,
} from './generator';
export {
  SourceNotEmptyError,
  installTotesys,
  seedTotesys,
  type InstallOptions,
  type RowCounts,
  type SeedOptions,
  type SeedProgress,
} from './seed';
export {
  SourceNotSeededError,
  runSimulation,
  type SimulationOptions,
  type SimulationProgress,
  type SimulationResult,
} from './simulate';
