import { Client } from 'pg';
import {
  DEFAULT_SOURCE_WANT,
  evaluateSource,
  gatherSourceFacts,
  type Finding,
  type SourceFacts,
  type SourceWant,
} from '../../capture/source-checks';
import { redactUrl } from '../../core/logger';
import { defineCommand, UsageError } from '../command';

// An unreachable host (a dropped packet, a closed security group) would otherwise hang until the OS
// gives up; the checks themselves are a handful of catalog reads.
const CONNECT_TIMEOUT_MS = 10_000;
const STATEMENT_TIMEOUT_MS = 10_000;

const SYMBOL = { error: '✗', warning: '!', info: '✓' } as const;

type Report = { source: string; want: SourceWant } & (
  { connected: false; connectionError: string } | { connected: true; facts: SourceFacts; findings: Finding[] }
);

export const command = defineCommand({
  name: 'doctor',
  summary:
    'Check a source database for everything capture needs, and say how to fix what is missing. ' +
    'Exits 1 when something would stop capture (warnings do not).',
  usage: 'doctor --source-url URL [--publication NAME] [--slot NAME] [--tables t1,t2] [--json]',
  options: {
    'source-url': { type: 'string' },
    publication: { type: 'string' },
    slot: { type: 'string' },
    tables: { type: 'string' },
    json: { type: 'boolean' },
  },
  optionHelp: {
    'source-url': 'postgres:// URL of the source database (default: $TOTES_SOURCE_URL).',
    publication: `Publication capture reads (default: ${DEFAULT_SOURCE_WANT.publication}).`,
    slot: `Replication slot capture streams from (default: ${DEFAULT_SOURCE_WANT.slot}).`,
    tables: 'Comma-separated tables to capture, `table` or `schema.table` (default: the 11 totesys tables).',
    json: 'Print one JSON object (findings and the facts behind them) instead of text.',
  },
  async run(values, positionals) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    const url = values['source-url'] ?? process.env.TOTES_SOURCE_URL;
    if (!url) throw new UsageError('--source-url is required (or set TOTES_SOURCE_URL)');
    if (!/^postgres(ql)?:$/.test(safeUrl(url)?.protocol ?? ''))
      throw new UsageError('--source-url must be a postgres:// URL');
    const want: SourceWant = {
      publication: values.publication ?? DEFAULT_SOURCE_WANT.publication,
      slot: values.slot ?? DEFAULT_SOURCE_WANT.slot,
      tables: values.tables === undefined ? DEFAULT_SOURCE_WANT.tables : parseTables(values.tables),
    };

    const report = await diagnose(url, want);
    if (values.json) process.stdout.write(`${JSON.stringify(toJson(report), null, 2)}\n`);
    else if (report.connected) process.stdout.write(renderText(report));
    else
      process.stderr.write(`totes doctor: cannot connect to ${report.source}: ${report.connectionError}\n`);
    return isOk(report) ? 0 : 1;
  },
});

function safeUrl(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

function parseTables(list: string): string[] {
  const tables = list
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  if (tables.length === 0) throw new UsageError('--tables needs at least one table name');
  return tables;
}

async function diagnose(url: string, want: SourceWant): Promise<Report> {
  const source = redactUrl(url);
  const client = new Client({
    connectionString: url,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    application_name: 'totes doctor',
  });
  // A connection lost mid-check also rejects the pending query, which is what reports it.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    return { source, want, connected: false, connectionError: describeConnectionError(e, url) };
  }
  try {
    const facts = await gatherSourceFacts(client, want);
    return { source, want, connected: true, facts, findings: evaluateSource(facts, want) };
  } finally {
    await client.end();
  }
}

/** A sentence an operator can act on, never a stack trace; the URL's password never appears. */
function describeConnectionError(e: unknown, url: string): string {
  const u = new URL(url);
  const where = `${u.hostname}:${u.port || '5432'}`;
  const user = decodeURIComponent(u.username);
  const database = decodeURIComponent(u.pathname.slice(1)) || user;
  const code = (e as { code?: unknown }).code;
  const message = e instanceof Error ? e.message : String(e);
  // SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
  switch (code) {
    case '28P01':
      return `authentication failed for user "${user}": check the user name and password.`;
    case '28000':
      return `the server refused the connection (${message}): check that the role exists and pg_hba.conf admits it from this address.`;
    case '3D000':
      return `database "${database}" does not exist on ${where}.`;
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
      return `host ${where} is unreachable (${code}): check the host and port, that Postgres is running, and that firewalls or security groups let this machine in.`;
  }
  // What pg reports when the peer hangs up before start-up completes: not Postgres, or a proxy.
  if (/terminated unexpectedly/.test(message))
    return `${where} closed the connection before Postgres start-up finished: check that a Postgres server listens on that host and port.`;
  if (/timeout/i.test(message))
    return `host ${where} did not answer within ${CONNECT_TIMEOUT_MS / 1000} s: check the host and port, and that firewalls or security groups let this machine in.`;
  return message;
}

function counts(findings: Finding[]): { errors: number; warnings: number } {
  return {
    errors: findings.filter((f) => f.severity === 'error').length,
    warnings: findings.filter((f) => f.severity === 'warning').length,
  };
}

function isOk(report: Report): boolean {
  return report.connected && counts(report.findings).errors === 0;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function renderText(report: Report & { connected: true }): string {
  const { want, findings } = report;
  const lines = [
    `totes doctor: ${report.source}`,
    `  publication ${want.publication}, slot ${want.slot}, ${plural(want.tables.length, 'table')}`,
    '',
  ];
  for (const f of findings) {
    lines.push(`${SYMBOL[f.severity]} ${f.problem}`);
    if (f.fix) {
      const [first, ...rest] = f.fix.split('\n');
      lines.push(`    fix: ${first}`, ...rest.map((l) => `         ${l}`));
    }
  }
  const { errors, warnings } = counts(findings);
  lines.push('');
  if (errors > 0)
    lines.push(
      `${plural(errors, 'error')}, ${plural(warnings, 'warning')}: capture cannot start until the errors are fixed.`,
    );
  else if (warnings > 0) lines.push(`Ready for capture, with ${plural(warnings, 'warning')}.`);
  else lines.push(`Ready for capture: all ${plural(findings.length, 'check')} passed.`);
  return `${lines.join('\n')}\n`;
}

function toJson(report: Report): Record<string, unknown> {
  const base = { source: report.source, ...report.want, ok: isOk(report) };
  if (!report.connected) return { ...base, connectionError: report.connectionError };
  return { ...base, ...counts(report.findings), findings: report.findings, facts: report.facts };
}
