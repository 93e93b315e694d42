import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { readSinkDelayMs, startSinkThrottle } from './sink-throttle';

/** A stand-in for kinesalite that echoes what it was sent. */
async function echoServer(): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += String(d)));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ method: req.method, path: req.url, target: req.headers['x-amz-target'], body }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('sink throttle', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-throttle-'));
  const control = path.join(dir, 'delay-ms');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads the delay from the control file, 0 when absent or not a positive number', async () => {
    fs.rmSync(control, { force: true });
    expect(await readSinkDelayMs(control)).toBe(0);
    fs.writeFileSync(control, '250\n');
    expect(await readSinkDelayMs(control)).toBe(250);
    fs.writeFileSync(control, 'soon');
    expect(await readSinkDelayMs(control)).toBe(0);
    fs.writeFileSync(control, '-5');
    expect(await readSinkDelayMs(control)).toBe(0);
  });

  it('passes requests through unchanged, holding them back only while the file asks', async () => {
    const target = await echoServer();
    const throttle = await startSinkThrottle({ target: target.url, controlFile: control });
    const put = async () => {
      const res = await fetch(`${throttle.endpoint}/`, {
        method: 'POST',
        headers: { 'x-amz-target': 'Kinesis_20131202.PutRecords' },
        body: '{"Records":[]}',
      });
      return { status: res.status, body: await res.json() };
    };
    try {
      fs.rmSync(control, { force: true });
      expect(await put()).toEqual({
        status: 200,
        body: { method: 'POST', path: '/', target: 'Kinesis_20131202.PutRecords', body: '{"Records":[]}' },
      });
      expect(throttle.delayedRequests).toBe(0);
      fs.writeFileSync(control, '20');
      expect((await put()).status).toBe(200);
      expect(throttle.delayedRequests).toBe(1);
    } finally {
      await throttle.stop();
      await target.close();
    }
  });

  it('drops the caller’s connection when the sink is gone, as a dead kinesalite would', async () => {
    const target = await echoServer();
    await target.close();
    fs.rmSync(control, { force: true });
    const throttle = await startSinkThrottle({ target: target.url, controlFile: control });
    try {
      await expect(fetch(`${throttle.endpoint}/`, { method: 'POST', body: '{}' })).rejects.toThrow();
    } finally {
      await throttle.stop();
    }
  });
});
