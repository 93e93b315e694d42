// The AWS SDK warns once per process that its 2027 releases need Node 22; the project knows (README,
// "Limits") and the Lambdas already target a newer runtime, so keep test output readable.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
