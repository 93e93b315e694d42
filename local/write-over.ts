/* eslint-disable security/detect-non-literal-fs-filename -- callers pass files of their own directories under the operator's --data-dir */
import fs from 'node:fs';

/**
 * `text` written from the start of an existing file, in one write(): of at most a page, it is whole
 * or absent after a kill -9, and no file is created (the local stack's small state files rewritten
 * in place: bench/README.md, "the local stack's files"). `truncate` cuts what a longer earlier
 * content left after it; a rewrite of the same length needs no cut. ENOENT when the file is gone.
 */
export function writeOver(file: string, text: string, options: { truncate?: boolean } = {}): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, text, 0);
    if (options.truncate) fs.ftruncateSync(fd, Buffer.byteLength(text));
  } finally {
    fs.closeSync(fd);
  }
}
