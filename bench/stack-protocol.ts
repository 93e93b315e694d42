import type { S3TriggerStats } from '../local/s3-trigger';
import type { StageShare, TopFrame } from './profile-stages';

/**
 * What the bench and its stack process (pipeline-stack.ts) say to each other over the IPC channel:
 * the stack runs in a process of its own, as `totes up` runs it, so the load generator and the
 * probe in the bench process neither share its event loop nor count in its CPU.
 */

export interface StackConfig {
  /** The stack's data directory (kinesalite, s3rver, the warehouse cluster, checkpoints). */
  dataDir: string;
  sourceUrl: string;
  /** Load into this Postgres instead of an embedded warehouse under dataDir. */
  warehouseUrl?: string;
  /** capture.stats lines this often (capture's default is 10 s). */
  statsIntervalMs: number;
  /** Capture's slot and publication (TOTES_SLOT, TOTES_PUBLICATION): never a real deployment's. */
  slot: string;
  /** Every log line of the stack and capture, JSON, appended here. */
  logFile: string;
  /** Preload capture-profiler.ts into capture, writing the profiles SIGUSR2 asks for here. */
  captureProfileDir?: string;
  /** `totes up --freshness` (default fast). */
  freshness?: 'fast' | 'default';
  /** `totes up --buffer-interval-ms` (default the mode's). */
  bufferIntervalMs?: number;
  /** `totes up --stages` (default workers). */
  stages?: 'workers' | 'in-process';
}

export interface StackReady {
  pid: number;
  warehouseUrl: string;
  /** The embedded warehouse's data directory, or null when given a warehouse URL. */
  warehouseDataDir: string | null;
}

/** The newest `capture.stats` line's counters (cumulative since capture started). */
export interface CaptureCounters {
  changes: number;
  transactions: number;
  records: number;
  bytes: number;
  snapshotRows: number;
  lagBytes: number | null;
  lagSeconds: number | null;
  at: number;
}

/** Counters kept from the stages' log lines (`transformed`, `object loaded`), cumulative. */
export interface StageCounters {
  transform: {
    objects: number;
    changes: number;
    rows: number;
    rejected: number;
    bytesIn: number;
    bytesOut: number;
  };
  load: {
    objects: number;
    rows: number;
    written: number;
    /** Sum of the load's own `durationMs` (its warehouse transaction). */
    durationMs: number;
    maxDurationMs: number;
    duplicates: number;
  };
  /** Warnings and errors of the stack and capture, counted by `level: message`. */
  problems: Record<string, number>;
}

export interface StackStats {
  capturePid: number | null;
  captureRestarts: number;
  capture: CaptureCounters | null;
  delivery: {
    recordsIn: number;
    recordsOk: number;
    recordsDropped: number;
    recordsFailed: number;
    objectsOut: number;
    bytesOut: number;
    bufferedRecords: number;
    millisBehindLatest: number;
    /** Kinesis allows 5 per shard per second; the local delivery stream reads as AWS's would. */
    getRecordsCalls: number;
  };
  transform: S3TriggerStats;
  load: S3TriggerStats;
  logs: StageCounters;
}

/** One thread's share of the stack process: the main event loop, or a stage worker. */
export interface ThreadProfile {
  /** `main`, `transform worker 1`, `load worker 2`, … */
  thread: string;
  /** CPU seconds sampled busy (not idle) over the profile: this thread's CPU. */
  busySeconds: number;
  stages: StageShare[];
  top: TopFrame[];
}

export interface ProfileSummary {
  seconds: number;
  /** Every thread's samples together, by stage. */
  stages: StageShare[];
  top: TopFrame[];
  /** Per thread (the main thread alone with `--stages in-process`). */
  threads?: ThreadProfile[];
  /** Where the .cpuprofile was saved, if asked to. */
  file: string | null;
}

export type StackRequest =
  | { id: number; cmd: 'stats' }
  | { id: number; cmd: 'profile-start'; intervalUs: number }
  | { id: number; cmd: 'profile-stop'; file: string | null }
  | { id: number; cmd: 'stop' };

export type StackMessage =
  | { type: 'ready'; ready: StackReady }
  | { type: 'failed'; error: string }
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: string };
