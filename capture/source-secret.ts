/**
 * The source connection from a Secrets Manager secret, apart from the rest of capture's
 * configuration so that other functions (the reconciler's slot check) can use it without capture.
 */

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Builds a connection URL from a Secrets Manager secret: either a plain `postgres://` URL, or the
 * JSON shape RDS-managed secrets use (`host`, `port`, `username`, `password`, `dbname`).
 */
export function sourceUrlFromSecret(secret: string): string {
  const text = secret.trim();
  if (/^postgres(ql)?:\/\//.test(text)) return text;
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError('the source secret is neither a postgres:// URL nor JSON');
  }
  const { host, port, username, password, dbname } = parsed as Record<string, string | number | undefined>;
  if (!host || !username || !password) {
    throw new ConfigError(
      'the source secret JSON needs host, username and password (and optionally port, dbname)',
    );
  }
  const url = new URL('postgres://placeholder');
  url.hostname = String(host);
  url.port = String(port ?? 5432);
  url.username = encodeURIComponent(String(username));
  url.password = encodeURIComponent(String(password));
  url.pathname = `/${encodeURIComponent(String(dbname ?? 'postgres'))}`;
  return url.toString();
}
