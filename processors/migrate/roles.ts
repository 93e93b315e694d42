import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import type { ClientBase } from 'pg';

/**
 * The warehouse's login roles, created by the migration step as the RDS master user (the only time
 * the master user is used: at deploy, never at run time). Each role's password comes from its own
 * secret; migrations then run as the owner, and migrations/004_roles.sql grants the others what
 * they may do. The password never appears in SQL text, logs included: Postgres is sent a
 * SCRAM-SHA-256 verifier computed here, which it stores as is.
 * https://www.postgresql.org/docs/current/sql-createrole.html (ENCRYPTED PASSWORD, pre-hashed)
 */
export const WAREHOUSE_ROLES = {
  /** Owns the tables; migrations run as it. */
  owner: 'totes_owner',
  /** The load function: DML on the warehouse tables. */
  load: 'totes_load',
  /** Analysts, the dashboard, QuickSight, the reconciler: read only. */
  reporting: 'totes_reporting',
} as const;
export type WarehouseRole = keyof typeof WAREHOUSE_ROLES;

const SCRAM_ITERATIONS = 4096;

/**
 * The SCRAM-SHA-256 verifier Postgres stores for a password (RFC 5802, RFC 7677):
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.
 */
export function scramVerifier(password: string, salt: Buffer = randomBytes(16)): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, SCRAM_ITERATIONS, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  const b64 = (b: Buffer) => b.toString('base64');
  return `SCRAM-SHA-256$${SCRAM_ITERATIONS}:${b64(salt)}$${b64(storedKey)}:${b64(serverKey)}`;
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

/**
 * Creates (or updates the password of) each login role, lets each connect to `database`, and lets
 * the owner create in the schema. Idempotent: run on every migration step, so a rotated secret
 * takes effect at the next deployment.
 */
export async function ensureWarehouseRoles(
  admin: Pick<ClientBase, 'query'>,
  passwords: Record<WarehouseRole, string>,
  database: string,
): Promise<void> {
  for (const role of Object.keys(WAREHOUSE_ROLES) as WarehouseRole[]) {
    const name = WAREHOUSE_ROLES[role];
    const { rows } = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
    const verb = rows.length ? 'ALTER' : 'CREATE';
    await admin.query(
      `${verb} ROLE ${ident(name)} WITH LOGIN PASSWORD ${literal(scramVerifier(passwords[role]))}`,
    );
    await admin.query(`GRANT CONNECT ON DATABASE ${ident(database)} TO ${ident(name)}`);
  }
  // The owner creates the tables (PG 15+ gives PUBLIC no CREATE on the public schema).
  await admin.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${ident(WAREHOUSE_ROLES.owner)}`);
}
