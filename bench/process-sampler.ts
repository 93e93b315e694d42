import fs from 'node:fs';
import path from 'node:path';

/**
 * CPU and memory of every process the pipeline runs in, sampled from /proc while a step runs:
 * `/proc/<pid>/stat` (utime + stime, in clock ticks) and `/proc/<pid>/status` (VmRSS, RssAnon).
 * https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html ·
 * https://man7.org/linux/man-pages/man5/proc_pid_status.5.html
 *
 * Processes are grouped (the stack process, capture, the source's walsender, …); a group names its
 * processes anew at every sample, so a restarted capture or a new Postgres backend is followed. The
 * whole machine's busy time (/proc/stat) is sampled too: this machine is shared, and what the other
 * processes used in a step says how much of the two cores the pipeline really had.
 */

/** Clock ticks per second of /proc (USER_HZ), which Linux fixes at 100 for user space. */
const USER_HZ = 100;

export interface ProcessGroup {
  name: string;
  /** The group's processes now (pids; empty when it has none). */
  pids(): number[];
}

interface Reading {
  ticks: number;
  /** Start time after boot, in ticks: tells a reused pid from the process seen before. */
  startTicks: number;
  rssKiB: number;
  anonKiB: number;
}

export interface GroupUsage {
  /** User + system CPU seconds the group's processes used in the window. */
  cpuSeconds: number;
  /** cpuSeconds per wall second: cores the group kept busy. */
  cores: number;
  /** Highest sum of the group's resident set (VmRSS) at any sample. */
  peakRssMiB: number;
  /**
   * Highest sum of private anonymous memory (RssAnon) at any sample: for Postgres, whose processes
   * all map the same shared buffers, this is the memory a group adds.
   */
  peakPrivateMiB: number;
  /** Distinct processes seen. */
  processes: number;
}

export interface WindowUsage {
  seconds: number;
  groups: Record<string, GroupUsage>;
  /** Every process on the machine, from /proc/stat; null where unreadable. */
  machineCpuSeconds: number | null;
  /** machineCpuSeconds minus the groups': other engineers' work on a shared machine. */
  otherCpuSeconds: number | null;
  loadAverage: { start: number; end: number };
}

function readReading(pid: number): Reading | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name (which may contain spaces): utime, stime and
    // starttime are fields 14, 15 and 22 of the line, i.e. 11, 12 and 19 after ") ".
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return {
      ticks: Number(f[11]) + Number(f[12]),
      startTicks: Number(f[19]),
      rssKiB: kib('VmRSS'),
      anonKiB: kib('RssAnon'),
    };
  } catch {
    return null; // gone between listing and reading
  }
}

/** Busy ticks of all CPUs since boot (everything but idle and iowait), or null. */
function machineTicks(): number | null {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [, ...values] = line.trim().split(/\s+/);
    const n = values.map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    return n.slice(0, 8).reduce((a, b) => a + b, 0) - (n[3] ?? 0) - (n[4] ?? 0);
  } catch {
    return null;
  }
}

/** Ticks since boot now, for telling processes started inside a window. */
function uptimeTicks(): number {
  try {
    return Math.round(Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * USER_HZ);
  } catch {
    return 0;
  }
}

interface PidTrack {
  startTicks: number;
  baseTicks: number;
  lastTicks: number;
}

interface GroupTrack {
  pids: Map<number, PidTrack>;
  peakRssKiB: number;
  peakAnonKiB: number;
}

/** One measuring window (a step's load phase, its drain): opened, sampled, closed. */
export class UsageWindow {
  private readonly groups = new Map<string, GroupTrack>();
  private readonly startedAt = performance.now();
  private readonly openedAtTicks = uptimeTicks();
  private readonly machineAtStart = machineTicks();
  private readonly loadAtStart = loadAverage();

  constructor(private readonly sources: readonly ProcessGroup[]) {
    this.sample(true);
  }

  /** Reads every group's processes; the first sample sets each process' baseline. */
  sample(first = false): void {
    for (const source of this.sources) {
      let track = this.groups.get(source.name);
      if (!track) {
        track = { pids: new Map(), peakRssKiB: 0, peakAnonKiB: 0 };
        this.groups.set(source.name, track);
      }
      let rss = 0;
      let anon = 0;
      for (const pid of source.pids()) {
        const r = readReading(pid);
        if (!r) continue;
        rss += r.rssKiB;
        anon += r.anonKiB;
        const known = track.pids.get(pid);
        if (known && known.startTicks === r.startTicks) {
          known.lastTicks = r.ticks;
          continue;
        }
        // A process born inside the window spent all its CPU in it; one met later than the
        // window's start (seen for the first time now) is counted from now.
        const bornInside = !first && r.startTicks >= this.openedAtTicks;
        track.pids.set(pid, {
          startTicks: r.startTicks,
          baseTicks: bornInside ? 0 : r.ticks,
          lastTicks: r.ticks,
        });
      }
      track.peakRssKiB = Math.max(track.peakRssKiB, rss);
      track.peakAnonKiB = Math.max(track.peakAnonKiB, anon);
    }
  }

  close(): WindowUsage {
    this.sample();
    const seconds = (performance.now() - this.startedAt) / 1000;
    const groups: Record<string, GroupUsage> = {};
    let ours = 0;
    for (const [name, track] of this.groups) {
      const ticks = [...track.pids.values()].reduce((sum, p) => sum + (p.lastTicks - p.baseTicks), 0);
      ours += ticks;
      const cpuSeconds = ticks / USER_HZ;
      groups[name] = {
        cpuSeconds,
        cores: seconds > 0 ? cpuSeconds / seconds : 0,
        peakRssMiB: track.peakRssKiB / 1024,
        peakPrivateMiB: track.peakAnonKiB / 1024,
        processes: track.pids.size,
      };
    }
    const end = machineTicks();
    const machine =
      end !== null && this.machineAtStart !== null ? (end - this.machineAtStart) / USER_HZ : null;
    return {
      seconds,
      groups,
      machineCpuSeconds: machine,
      otherCpuSeconds: machine === null ? null : Math.max(0, machine - ours / USER_HZ),
      loadAverage: { start: this.loadAtStart, end: loadAverage() },
    };
  }
}

function loadAverage(): number {
  try {
    return Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
}

/** Samples every open window on one timer. */
export class ProcessSampler {
  private readonly windows = new Set<UsageWindow>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly groups: readonly ProcessGroup[],
    private readonly intervalMs = 500,
  ) {}

  open(): { close(): WindowUsage } {
    const window = new UsageWindow(this.groups);
    this.windows.add(window);
    if (!this.timer) {
      this.timer = setInterval(() => {
        for (const w of this.windows) w.sample();
      }, this.intervalMs);
      this.timer.unref();
    }
    return {
      close: () => {
        this.windows.delete(window);
        if (this.windows.size === 0 && this.timer) {
          clearInterval(this.timer);
          this.timer = null;
        }
        return window.close();
      },
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Postgres: a cluster's processes are the postmaster and its children; each child's title says
// what it is (https://www.postgresql.org/docs/current/monitoring-ps.html).

export type PostgresRole = 'walsender' | 'backends' | 'background';

/** Parent pid of every process now. */
export function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  return parents;
}

export function postgresRoleOf(title: string): PostgresRole {
  if (/^postgres: walsender /.test(title)) return 'walsender';
  // A client backend's title is "postgres: user database host(port) activity"; every auxiliary
  // process has a fixed name (checkpointer, walwriter, autovacuum launcher, …).
  if (/^postgres: \S+ \S+ \S+\(\d+\)|^postgres: \S+ \S+ \[local\]/.test(title)) return 'backends';
  return 'background';
}

function titleOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/**
 * The processes of the cluster whose data directory is `dataDir`, by role; the postmaster counts as
 * background. Cached for a sampling interval, since every group of a cluster asks at once.
 */
export function postgresGroups(label: string, dataDir: string): ProcessGroup[] {
  let cachedAt = 0;
  let cached: Record<PostgresRole, number[]> = { walsender: [], backends: [], background: [] };
  const byRole = (): Record<PostgresRole, number[]> => {
    if (performance.now() - cachedAt < 100) return cached;
    cachedAt = performance.now();
    cached = { walsender: [], backends: [], background: [] };
    let postmaster: number;
    try {
      postmaster = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return cached;
    }
    cached.background.push(postmaster);
    for (const [pid, parent] of parentPids())
      if (parent === postmaster) cached[postgresRoleOf(titleOf(pid))].push(pid);
    return cached;
  };
  return (['walsender', 'backends', 'background'] as const).map((role) => ({
    name: `${label} postgres: ${role}`,
    pids: () => byRole()[role],
  }));
}
