/**
 * Stands in, in the infra tests only, for a handler module that does not exist yet in this checkout
 * (NodejsFunction refuses an entry that is missing even when bundling is skipped).
 */
export const handler = async (): Promise<void> => {};
