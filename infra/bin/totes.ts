import { App } from 'aws-cdk-lib';
import { buildTotesApp } from '../app';
import { readTotesConfig } from '../config';

// Builds the app from context (cdk.json, --context) and nothing else; docs/deploy.md lists the keys.
const app = new App();
buildTotesApp(
  app,
  readTotesConfig((key) => app.node.tryGetContext(key)),
);
