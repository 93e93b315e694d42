import { compareLsn, maxLsn, type Lsn } from '../core/lsn';

/**
 * Decides what capture may confirm to the replication slot. Pure: the capture loop reports what it
 * saw (transaction boundaries, flushes to the sink, keepalives) and gets back the LSN to confirm.
 *
 * The rule: a transaction's end LSN is confirmed only once every change of it — and of every
 * transaction before it — was accepted by the sink. A flush takes everything buffered so far, so
 * the last commit seen when a flush starts is covered once that flush (and every earlier one)
 * finished. With nothing in flight, a keepalive's WAL end is confirmed too, so an idle slot (or one
 * whose tables see no writes while others do) does not pin WAL on the server.
 */
export class AckTracker {
  private txnOpen = false;
  private lastCommitEnd: Lsn | null = null;
  private inFlight = 0;

  /** @param durable the slot's confirmed_flush_lsn when streaming starts. */
  constructor(private durable: Lsn) {}

  get confirmed(): Lsn {
    return this.durable;
  }

  get flushesInFlight(): number {
    return this.inFlight;
  }

  begin(): void {
    this.txnOpen = true;
  }

  commit(endLsn: Lsn): void {
    this.txnOpen = false;
    this.lastCommitEnd = this.lastCommitEnd ? maxLsn(this.lastCommitEnd, endLsn) : endLsn;
  }

  /** A flush of everything buffered is starting; returns what it will make durable. */
  startFlush(): Lsn | null {
    this.inFlight += 1;
    return this.lastCommitEnd;
  }

  /**
   * A flush finished (flushes finish in the order they started). Returns the LSN to confirm when
   * the durable position moved, else null.
   */
  finishFlush(token: Lsn | null): Lsn | null {
    this.inFlight -= 1;
    return this.advanceTo(token);
  }

  /**
   * A primary keepalive arrived. `bufferEmpty`: nothing received is waiting to be flushed.
   * Returns the LSN to confirm now (null: nothing to say), honouring a reply request.
   */
  keepalive(walEnd: Lsn, bufferEmpty: boolean, replyRequested: boolean): Lsn | null {
    const idle =
      !this.txnOpen &&
      bufferEmpty &&
      this.inFlight === 0 &&
      (this.lastCommitEnd === null || compareLsn(this.durable, this.lastCommitEnd) >= 0);
    const advanced = idle ? this.advanceTo(walEnd) : null;
    return advanced ?? (replyRequested ? this.durable : null);
  }

  private advanceTo(lsn: Lsn | null): Lsn | null {
    if (lsn === null || compareLsn(lsn, this.durable) <= 0) return null;
    this.durable = lsn;
    return lsn;
  }
}
