import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/**
 * Debian's chromium driven by playwright-core (no browser download: the package brings none), as
 * the browser tests and the screenshot script use it. `.ci/run` installs chromium with apt-get when
 * it is missing.
 */
export const CHROMIUM = process.env.TOTES_CHROMIUM ?? '/usr/bin/chromium';

/** Quiet, offline, reproducible: no GPU, no QUIC, no first-run or background traffic, no sync. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A fresh profile in a temporary directory, removed on close. */
export async function launchChromium(
  options: { locale?: string; width?: number; height?: number } = {},
): Promise<Browser> {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'totes-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    locale: options.locale ?? 'en-GB',
    timezoneId: 'UTC',
    viewport: { width: options.width ?? 1400, height: options.height ?? 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Opens the dashboard, waits until its first snapshot is rendered, and saves a full-page PNG. */
export async function screenshotDashboard(url: string, file: string, browser?: Browser): Promise<void> {
  const own = browser ?? (await launchChromium());
  try {
    const page = await own.context.newPage();
    await page.goto(url);
    await page.waitForSelector('#updated[data-generated-at]');
    await page.screenshot({ path: file, fullPage: true });
    await page.close();
  } finally {
    if (!browser) await own.close();
  }
}
