// kinesalite ships no types; this is the part of its programmatic API the project uses
// (https://github.com/mhart/kinesalite#readme).
declare module 'kinesalite' {
  import type { Server } from 'node:http';

  interface KinesaliteOptions {
    /** LevelDB directory (through leveldown); in memory when omitted. */
    path?: string;
    ssl?: boolean;
    /** How long a stream stays CREATING / DELETING / UPDATING (default 500 ms each). */
    createStreamMs?: number;
    deleteStreamMs?: number;
    updateStreamMs?: number;
    shardLimit?: number;
  }

  /** A plain Node HTTP server; `close()` also closes the LevelDB store. */
  function kinesalite(options?: KinesaliteOptions): Server;
  export = kinesalite;
}
