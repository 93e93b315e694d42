/**
 * V8's semi-space size (MiB) for the stages that allocate a short-lived object or string per value:
 * the Firehose record transformation, transform and load. Node's default is 16 MiB: with it,
 * scavenges ran often and promoted to the old generation what a larger young generation lets die
 * young. Measured with `npm run bench:load`, back to back on the idle 2-core machine
 * (NODE_OPTIONS=--max-semi-space-size=64 against the default): the load process 17–45 → 12–29 µs
 * per row, 19,910–31,924 → 25,079–42,828 rows/s per object (bench/README.md). The Lambdas get it in
 * NODE_OPTIONS (infra/constructs/pipeline-function.ts), the local stage workers as their young
 * generation (local/stage-workers.ts). It costs up to 2 × this much memory per heap.
 */
export const STAGE_SEMI_SPACE_MIB = 64;

/**
 * The young generation V8 sizes from a semi-space: two semi-spaces and a new large-object space of
 * the same size (what a Worker's `resourceLimits.maxYoungGenerationSizeMb` sets).
 */
export const youngGenerationMiB = (semiSpaceMiB: number): number => 3 * semiSpaceMiB;
