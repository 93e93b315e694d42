import type { Pgoutput } from 'pg-logical-replication';
import { microsToIso, type Change, type ChangeOp, type Column } from '../core/change-event';
import { addToLsn, normaliseLsn, type Lsn } from '../core/lsn';
import type { StreamMessage, TextTuple } from './pgoutput-rows';

/**
 * Turns pgoutput messages (as parsed by pg-logical-replication) into change events. Pure: it keeps
 * only the state of the transaction being received (its commit LSN, commit time and the ordinal of
 * the next change), so it is tested with hand-built messages and no database.
 */

/** What the decoder hands to the capture loop, one item per pgoutput message that matters. */
export type DecodedItem =
  | { kind: 'begin'; lsn: Lsn; ts: string }
  | {
      kind: 'change';
      schema: string;
      table: string;
      columns: Column[];
      change: Change;
      /** JSON.stringify(change.values), when the parser wrote it (capture/pgoutput-rows.ts). */
      valuesJson?: string;
    }
  | {
      kind: 'commit';
      /** Commit record's LSN: the identity every change of the transaction carries. */
      lsn: Lsn;
      /** End of the commit record: what to confirm to the slot once the transaction is durable. */
      endLsn: Lsn;
      ts: string;
      changes: number;
    }
  | {
      kind: 'message';
      prefix: string;
      content: string;
      transactional: boolean;
      /** A transactional message's place in its transaction (it takes an ordinal like a change). */
      position?: { lsn: Lsn; ts: string; seq: number };
    };

export class DecodeError extends Error {
  override readonly name = 'DecodeError';
}

/**
 * Names of built-in types by OID (pg_type.typname). pgoutput sends a Type message only for
 * non-built-in types (enums, domains), so built-ins must be known here; the snapshot reads the same
 * names from pg_type, keeping both paths' column types equal.
 * https://github.com/postgres/postgres/blob/master/src/include/catalog/pg_type.dat
 */
export const BUILTIN_TYPE_NAMES: Readonly<Record<number, string>> = {
  16: 'bool',
  17: 'bytea',
  18: 'char',
  19: 'name',
  20: 'int8',
  21: 'int2',
  23: 'int4',
  25: 'text',
  26: 'oid',
  114: 'json',
  700: 'float4',
  701: 'float8',
  1042: 'bpchar',
  1043: 'varchar',
  1082: 'date',
  1083: 'time',
  1114: 'timestamp',
  1184: 'timestamptz',
  1186: 'interval',
  1266: 'timetz',
  1700: 'numeric',
  2950: 'uuid',
  3802: 'jsonb',
};

/**
 * pg-logical-replication keeps one relation object per table until the next Relation message
 * replaces it, so the column list is computed once per relation object, not once per change: the
 * batcher then recognises the layout by identity (measured: a quarter of capture's CPU went to
 * rebuilding and re-serialising it for every change).
 */
const columnCache = new WeakMap<Pgoutput.MessageRelation, Column[]>();

export function columnsOf(relation: Pgoutput.MessageRelation): Column[] {
  let columns = columnCache.get(relation);
  if (!columns) {
    columns = describeColumns(relation);
    columnCache.set(relation, columns);
  }
  return columns;
}

function describeColumns(relation: Pgoutput.MessageRelation): Column[] {
  return relation.columns.map((c) => ({
    name: c.name,
    type: c.typeName ?? BUILTIN_TYPE_NAMES[c.typeOid] ?? `oid:${c.typeOid}`,
    // pgoutput flags bit 1 = the column is part of the replica identity key.
    key: (c.flags & 1) === 1,
  }));
}

/**
 * A row as the stream delivers it (capture/pgoutput-rows.ts: values in column order), or in
 * pg-logical-replication's own shape (an object keyed by column name).
 */
type Tuple = TextTuple | Record<string, unknown> | null;

/** Values of the message kinds the decoder takes: the stream's, or the library's own. */
export type DecoderMessage = StreamMessage | Pgoutput.Message;

function valueAt(relation: Pgoutput.MessageRelation, tuple: Tuple, i: number): unknown {
  if (!tuple) return null;
  return Array.isArray(tuple) ? tuple[i] : (tuple as Record<string, unknown>)[relation.columns[i].name];
}

/**
 * Aligns a parsed tuple with the relation's columns. A column missing from the tuple (`undefined`)
 * is an unchanged TOAST datum in an update, or a non-key column of a key-only delete.
 */
function toValues(
  relation: Pgoutput.MessageRelation,
  tuple: Tuple,
): { values: (string | null)[]; unchanged: number[] } {
  const width = relation.columns.length;
  // The stream's tuples are arrays of text made for this one message: one with every value sent is
  // the change's values as it is.
  if (Array.isArray(tuple) && tuple.length === width && !tuple.includes(undefined))
    return { values: tuple as (string | null)[], unchanged: NONE };
  const values: (string | null)[] = new Array<string | null>(width);
  let unchanged: number[] | null = null;
  for (let i = 0; i < width; i++) {
    const value = valueAt(relation, tuple, i);
    if (value === undefined) {
      (unchanged ??= []).push(i);
      values[i] = null;
    } else if (value === null || typeof value === 'string') {
      values[i] = value;
    } else {
      // Binary-format columns are never requested; anything else means the raw-text parser was bypassed.
      const column = relation.columns[i];
      throw new DecodeError(
        `column ${relation.schema}.${relation.name}.${column.name} arrived as ${typeof value}, expected text`,
      );
    }
  }
  return { values, unchanged: unchanged ?? NONE };
}

const NONE: number[] = [];

/** The parser's JSON of a tuple, on the stream's row messages (the library's have none). */
function jsonOf(message: object, field: 'newJson' | 'oldJson'): string | undefined {
  return (message as { newJson?: string; oldJson?: string })[field];
}

export class PgoutputDecoder {
  private txn: { lsn: Lsn; ts: string; seq: number } | null = null;

  /** True between a BEGIN and its COMMIT. */
  get inTransaction(): boolean {
    return this.txn !== null;
  }

  decode(message: DecoderMessage): DecodedItem | DecodedItem[] | null {
    switch (message.tag) {
      case 'begin': {
        if (!message.commitLsn) throw new DecodeError('BEGIN without a final LSN');
        const ts = microsToIso(message.commitTime as bigint);
        this.txn = { lsn: normaliseLsn(message.commitLsn), ts, seq: 0 };
        return { kind: 'begin', lsn: this.txn.lsn, ts };
      }
      case 'commit': {
        const txn = this.requireTxn('COMMIT');
        if (!message.commitEndLsn) throw new DecodeError('COMMIT without an end LSN');
        this.txn = null;
        return {
          kind: 'commit',
          lsn: txn.lsn,
          endLsn: normaliseLsn(message.commitEndLsn),
          ts: txn.ts,
          changes: txn.seq,
        };
      }
      case 'insert':
        return this.change(message.relation, 'insert', message.new, jsonOf(message, 'newJson'));
      case 'update':
        return this.update(
          message.relation,
          message.key ?? message.old,
          message.new,
          jsonOf(message, 'newJson'),
        );
      case 'delete':
        return message.old
          ? this.change(message.relation, 'delete', message.old, jsonOf(message, 'oldJson'))
          : this.change(message.relation, 'delete', message.key);
      case 'truncate':
        return message.relations.map((relation) => this.change(relation, 'truncate', null));
      case 'message': {
        // A transactional message arrives inside its transaction's BEGIN/COMMIT; others at once.
        const txn = message.transactional ? this.txn : null;
        return {
          kind: 'message',
          prefix: message.prefix,
          content: Buffer.from(message.content).toString('utf8'),
          transactional: message.transactional,
          ...(txn ? { position: { lsn: txn.lsn, ts: txn.ts, seq: txn.seq++ } } : {}),
        };
      }
      case 'relation':
      case 'type':
      case 'origin':
        // Relation and type messages only update the parser's caches; origins do not affect us.
        return null;
      default:
        message satisfies never;
        throw new DecodeError(
          `unknown pgoutput message ${JSON.stringify((message as { tag?: unknown }).tag)}`,
        );
    }
  }

  private requireTxn(what: string): { lsn: Lsn; ts: string; seq: number } {
    if (!this.txn) throw new DecodeError(`${what} outside a transaction`);
    return this.txn;
  }

  /**
   * pgoutput sends the old key ('K' tuple, or 'O' under REPLICA IDENTITY FULL) with an UPDATE only
   * when the update changed the key (or under FULL, always). A changed key is a different row to
   * every consumer: the old key's row ends (a delete) and the new one is written, in that order, so
   * the old key does not stay live in the warehouse. totesys' foreign keys are ON UPDATE CASCADE,
   * so one key change arrives with the updates of its referencing rows in the same transaction.
   * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
   */
  private update(
    relation: Pgoutput.MessageRelation,
    old: Tuple,
    tuple: Tuple,
    json: string | undefined,
  ): DecodedItem | DecodedItem[] {
    const updated = this.change(relation, 'update', tuple, json);
    if (!old || updated.kind !== 'change') return updated;
    const keyChanged = relation.columns.some((c, i) => {
      if ((c.flags & 1) !== 1) return false;
      const before = valueAt(relation, old, i);
      return before !== undefined && before !== valueAt(relation, tuple, i);
    });
    if (!keyChanged) return updated;
    // The delete takes the update's ordinal; the update the next one.
    const removed = this.change(relation, 'delete', old);
    if (removed.kind === 'change' && updated.kind === 'change') {
      [removed.change.seq, updated.change.seq] = [updated.change.seq, removed.change.seq];
      const onlyKey = relation.columns.map((c, i) => ((c.flags & 1) === 1 ? removed.change.values[i] : null));
      removed.change.values = onlyKey;
    }
    return [removed, updated];
  }

  private change(relation: Pgoutput.MessageRelation, op: ChangeOp, tuple: Tuple, json?: string): DecodedItem {
    const txn = this.requireTxn(op.toUpperCase());
    const columns = columnsOf(relation);
    const { values, unchanged } =
      op === 'truncate' ? { values: [], unchanged: [] } : toValues(relation, tuple);
    const change: Change = { op, lsn: txn.lsn, seq: txn.seq++, ts: txn.ts, values };
    // Only an update can leave a TOASTed value unsent; a key-only delete simply lacks the other
    // columns, which toValues also reports as absent: those are plain nulls.
    if (unchanged.length > 0 && op === 'update') change.unchanged = unchanged;
    const item: DecodedItem = {
      kind: 'change',
      schema: relation.schema,
      table: relation.name,
      columns,
      change,
    };
    // The parser's JSON is of the tuple: it holds for the values only when they are that tuple.
    if (json !== undefined && values === tuple) item.valuesJson = json;
    return item;
  }
}

/**
 * Snapshot rows sort before everything the slot streams: they take the slot's consistent point
 * minus one. WAL records start at 8-byte aligned positions, so no commit record sits there, and every
 * transaction the slot delivers commits at or after the consistent point.
 */
export function snapshotLsn(consistentPoint: Lsn): Lsn {
  return addToLsn(consistentPoint, -1n);
}
