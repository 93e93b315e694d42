/* eslint-disable security/detect-non-literal-fs-filename -- the control file the operator (or `npm run chaos`) names */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A fault-injection hook: an HTTP proxy between capture and kinesalite that holds every request
 * back for as many milliseconds as a control file says (no file, or not a number: no delay).
 * Kinesis throttles a writer (ProvisionedThroughputExceededException, slow answers under load);
 * kinesalite never does, so this is the fake that lets `npm run chaos` throttle the sink while the
 * rest of the pipeline stays real. `totes up` starts it only when TOTES_FAULT_SINK_DELAY_FILE is set.
 */
export interface SinkThrottle {
  /** `http://127.0.0.1:<port>`: give it to capture instead of kinesalite's endpoint. */
  readonly endpoint: string;
  /** Requests held back so far (a delay above 0 was in force when they arrived). */
  readonly delayedRequests: number;
  stop(): Promise<void>;
}

/** The delay in force now: the control file's number of milliseconds, 0 when absent or unreadable. */
export async function readSinkDelayMs(controlFile: string): Promise<number> {
  try {
    const ms = Number((await fs.promises.readFile(controlFile, 'utf8')).trim());
    return Number.isFinite(ms) && ms > 0 ? ms : 0;
  } catch {
    return 0;
  }
}

export async function startSinkThrottle(options: {
  target: string;
  controlFile: string;
}): Promise<SinkThrottle> {
  const target = new URL(options.target);
  const agent = new http.Agent({ keepAlive: true });
  let delayedRequests = 0;
  const server = http.createServer((req, res) => {
    void readSinkDelayMs(options.controlFile).then((delayMs) => {
      if (delayMs > 0) delayedRequests++;
      // The request body waits (paused) in the socket's buffers while the delay runs.
      setTimeout(() => {
        const upstream = http.request(
          {
            host: target.hostname,
            port: target.port,
            method: req.method,
            path: req.url,
            headers: req.headers,
            agent,
          },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        // Kinesalite gone (the stack stopping): the caller sees a dropped connection, as it would.
        upstream.once('error', () => res.destroy());
        req.pipe(upstream);
      }, delayMs);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get delayedRequests() {
      return delayedRequests;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
