import fs from 'node:fs';
import path from 'node:path';
import { startEmbeddedCluster, type EmbeddedCluster } from '../local/embedded-postgres';

export type ShutdownMode = 'fast' | 'immediate';

/**
 * An embedded Postgres the chaos run can stop and start under `totes up` (which is given its URL, so
 * it neither owns nor restarts it), always on the same port. `fast` is the orderly shutdown an
 * operator's restart does (SIGINT: sessions aborted, checkpoint); `immediate` is a crash as far as
 * the data is concerned (SIGQUIT: no checkpoint, WAL replay at the next start).
 * https://www.postgresql.org/docs/current/server-shutdown.html
 */
export class RestartablePostgres {
  private cluster: EmbeddedCluster | null = null;
  private port = 0;

  constructor(
    readonly name: string,
    private readonly dataDir: string,
  ) {}

  async start(): Promise<void> {
    this.cluster = await startEmbeddedCluster({
      dataDir: this.dataDir,
      port: this.port,
      // The server's own log, beside the run's other logs: why a shutdown took long, what recovery did.
      onLog: (line) => fs.appendFileSync(`${this.dataDir}.log`, `${line}\n`),
    });
    this.port = this.cluster.port;
  }

  urlFor(database: string): string {
    if (!this.cluster) throw new Error(`${this.name} Postgres is not running`);
    return this.cluster.urlFor(database);
  }

  get running(): boolean {
    return this.cluster !== null;
  }

  async stop(mode: ShutdownMode = 'fast'): Promise<void> {
    const cluster = this.cluster;
    if (!cluster) return;
    this.cluster = null;
    if (mode === 'immediate') {
      const pid = Number(
        fs.readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
      );
      // Once in immediate shutdown the postmaster ignores the SIGINT stop() sends after this.
      if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGQUIT');
    }
    await cluster.stop();
  }
}
