import { NodeHttpHandler } from '@smithy/node-http-handler';

/**
 * Every AWS call totes makes has a deadline. Without one a call to an endpoint that accepts and
 * never answers hangs for as long as the socket lives: capture stays alive, paused and confirming
 * nothing; a Lambda waits out its whole timeout. Capture, the Lambdas and the CLI build their SDK
 * clients with this handler.
 */

/** Connect within 5 s; a socket idle for 30 s fails the request (PutRecords of 5 MiB takes well under a second). */
export const AWS_CONNECTION_TIMEOUT_MS = 5_000;
export const AWS_REQUEST_TIMEOUT_MS = 30_000;

export function awsRequestHandler(
  timeouts: { connectionMs?: number; requestMs?: number } = {},
): NodeHttpHandler {
  return new NodeHttpHandler({
    connectionTimeout: timeouts.connectionMs ?? AWS_CONNECTION_TIMEOUT_MS,
    // An idle-socket timeout, not a total one: a large object streams for as long as bytes flow.
    // https://github.com/smithy-lang/smithy-typescript/blob/main/packages/node-http-handler/README.md
    requestTimeout: timeouts.requestMs ?? AWS_REQUEST_TIMEOUT_MS,
    // @smithy/node-http-handler 4.x only logs a warning when requestTimeout passes unless told to
    // throw (measured: a PutRecords to a server that never answers hung past 60 s without this).
    throwOnRequestTimeout: true,
  });
}

/** The options every SDK client gets: a region when one is given, and the handler above. */
export function awsClientConfig(region?: string): { region?: string; requestHandler: NodeHttpHandler } {
  return { ...(region ? { region } : {}), requestHandler: awsRequestHandler() };
}
