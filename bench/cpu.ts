import fs from 'node:fs';
import type { Client } from 'pg';

/**
 * CPU time per process, so the report can say which process a run was waiting for: the walsender
 * decoding WAL, this process (capture, and kinesalite when it runs in-process), or a kinesalite
 * child. Wall-clock rates move with whatever else the machine is doing; CPU seconds move much less.
 */

/**
 * Clock ticks per second of /proc/<pid>/stat: USER_HZ, which Linux fixes at 100 for user space.
 * https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html
 */
const USER_HZ = 100;

/** CPU seconds each process spent during one run (null: not measurable here). */
export interface RunCpu {
  walsender: number | null;
  /** This process: the reader, or capture plus an in-process kinesalite. */
  bench: number;
  /** A kinesalite child process. */
  kinesalite: number | null;
}

/** User + system CPU seconds a process has used so far; null where /proc is unavailable. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name (which may contain spaces): utime and stime are
    // fields 14 and 15 of the line, i.e. 11 and 12 after ") ".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
  } catch {
    return null;
  }
}

/** CPU seconds of this process (all threads) so far. */
export function ownCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/**
 * CPU seconds used so far by the walsender serving `slot`: it starts with the reader's connection,
 * so asked just before the reader disconnects this is the decoding work of that reader's run.
 * Only meaningful for a server on this machine (the embedded cluster).
 */
export async function walsenderCpuSeconds(client: Client, slot: string): Promise<number | null> {
  const { rows } = await client.query('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [
    slot,
  ]);
  const pid = rows[0]?.active_pid;
  return typeof pid === 'number' ? processCpuSeconds(pid) : null;
}
