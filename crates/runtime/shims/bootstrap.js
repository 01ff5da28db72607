// Ember's Node.js runtime: the Lambda Runtime API client loop.
//
// Started as `node /var/runtime/bootstrap.js` inside a sandbox. It loads the handler named
// by _HANDLER from LAMBDA_TASK_ROOT (CommonJS or ES module), then loops: GET .../next,
// call the handler (async, promise-returning or callback style), POST the result or the
// error. Behaves like AWS's Node.js runtime: handler resolution, context object, console
// log format and error payloads.
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const API = process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
const [HOST, PORT] = [API.slice(0, API.lastIndexOf(':')), Number(API.slice(API.lastIndexOf(':') + 1))];
const PREFIX = '/2018-06-01/runtime';
let TASK_ROOT = process.env.LAMBDA_TASK_ROOT || '/var/task';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: PORT, method, path: PREFIX + p, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// Long polls (GET .../next, GET .../ember/assignment) carry this header: Ember may then
// answer one with 204 No Content to check that the runtime is responsive, and the runtime
// simply asks again.
const PROBE_HEADER = { 'Ember-Health-Probe': '1' };

async function longPoll(p) {
  for (;;) {
    const res = await request('GET', p, undefined, PROBE_HEADER);
    if (res.status !== 204) return res;
  }
}

let currentRequestId = '';
function patchConsole() {
  const write = (level) => (...args) => {
    process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`);
  };
  console.log = write('INFO');
  console.info = write('INFO');
  console.debug = write('DEBUG');
  console.warn = write('WARN');
  console.error = write('ERROR');
  console.trace = write('TRACE');
}

function errorPayload(err, type, message) {
  const isError = err instanceof Error;
  return {
    errorType: type || (isError ? err.name : typeof err === 'string' ? 'string' : 'Error'),
    errorMessage: message !== undefined ? message : isError ? err.message : String(err),
    trace: isError && err.stack ? err.stack.split('\n') : [],
  };
}

class InitError extends Error {
  constructor(type, message, cause) {
    super(message);
    this.type = type;
    this.cause = cause;
  }
}

async function loadModule(modulePath) {
  const base = path.resolve(TASK_ROOT, modulePath);
  if (fs.existsSync(base + '.mjs')) return import(pathToFileURL(base + '.mjs').href);
  if (fs.existsSync(base + '.cjs')) return require(base + '.cjs');
  try {
    return require(base);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') return import(pathToFileURL(base + '.js').href);
    throw e;
  }
}

async function loadHandler(spec) {
  const slash = spec.lastIndexOf('/');
  const dir = spec.slice(0, slash + 1);
  const rest = spec.slice(slash + 1);
  const dot = rest.indexOf('.');
  if (dot < 1 || dot === rest.length - 1) {
    throw new InitError('Runtime.MalformedHandlerName', `Bad handler ${spec}`);
  }
  const modulePath = dir + rest.slice(0, dot);
  let mod;
  try {
    mod = await loadModule(modulePath);
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND') {
      // The first line names the module that is missing: the handler's own, or one it requires.
      const first = String(e.message).split('\n')[0];
      const own = first.includes(path.resolve(TASK_ROOT, modulePath));
      const message = own ? `Error: Cannot find module '${rest.slice(0, dot)}'` : `Error: ${first}`;
      throw new InitError('Runtime.ImportModuleError', message, e);
    }
    if (e instanceof SyntaxError) {
      throw new InitError('Runtime.UserCodeSyntaxError', `${e.name}: ${e.message}`, e);
    }
    throw new InitError(e && e.name ? e.name : 'Runtime.ImportModuleError', e && e.message ? e.message : String(e), e);
  }
  let handler = mod;
  for (const part of rest.slice(dot + 1).split('.')) {
    handler = handler == null ? undefined : handler[part];
  }
  if (handler === undefined && mod && mod.default) {
    handler = mod.default;
    for (const part of rest.slice(dot + 1).split('.')) handler = handler == null ? undefined : handler[part];
  }
  if (typeof handler !== 'function') {
    throw new InitError('Runtime.HandlerNotFound', `${spec} is undefined or not exported`);
  }
  return handler;
}

function makeContext(headers) {
  const deadline = Number(headers['lambda-runtime-deadline-ms'] || 0);
  const parse = (v) => (v ? JSON.parse(v) : undefined);
  return {
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION || '$LATEST',
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parse(headers['lambda-runtime-client-context']),
    identity: parse(headers['lambda-runtime-cognito-identity']),
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(deadline - Date.now(), 0),
  };
}

function runHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const callback = (err, result) => {
      if (settled) return;
      settled = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(result);
    };
    context.done = callback;
    context.succeed = (result) => callback(null, result);
    context.fail = (err) => callback(err || new Error('handled'));
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (e) {
      callback(e);
      return;
    }
    if (returned && typeof returned.then === 'function') {
      returned.then((v) => callback(null, v), (e) => callback(e === undefined ? new Error('undefined') : e));
    } else if (handler.length < 3) {
      callback(null, returned);
    }
  });
}

async function postError(requestId, payload) {
  await request('POST', `/invocation/${requestId}/error`, JSON.stringify(payload), {
    'Content-Type': 'application/json',
    'Lambda-Runtime-Function-Error-Type': payload.errorType,
  });
}

function logError(payload) {
  process.stdout.write(
    `${new Date().toISOString()}\t${currentRequestId}\tERROR\tInvoke Error \t${JSON.stringify(payload)}\n`,
  );
}

// A pooled runtime boots before it has a function: wait for it (Ember's own call).
async function awaitAssignment() {
  const res = await longPoll('/ember/assignment');
  if (res.status !== 200) {
    process.stderr.write(`runtime API assignment answered ${res.status}\n`);
    process.exit(1);
  }
  const assignment = JSON.parse(res.body.toString('utf8'));
  delete process.env.EMBER_POOLED;
  Object.assign(process.env, assignment.env);
  process.env._HANDLER = assignment.handler;
  TASK_ROOT = process.env.LAMBDA_TASK_ROOT || '/var/task';
}

async function main() {
  patchConsole();
  if (process.env.EMBER_POOLED === '1') await awaitAssignment();
  let handler;
  try {
    handler = await loadHandler(process.env._HANDLER || '');
  } catch (e) {
    const payload = e instanceof InitError ? errorPayload(e.cause || e, e.type, e.message) : errorPayload(e);
    logError(payload);
    await request('POST', '/init/error', JSON.stringify(payload), {
      'Lambda-Runtime-Function-Error-Type': payload.errorType,
    });
    process.exit(1);
  }
  for (;;) {
    const next = await longPoll('/invocation/next');
    if (next.status !== 200) {
      process.stderr.write(`runtime API /next answered ${next.status}\n`);
      process.exit(1);
    }
    const requestId = next.headers['lambda-runtime-aws-request-id'];
    currentRequestId = requestId;
    if (next.headers['lambda-runtime-trace-id']) process.env._X_AMZN_TRACE_ID = next.headers['lambda-runtime-trace-id'];
    else delete process.env._X_AMZN_TRACE_ID;
    let event;
    try {
      event = next.body.length ? JSON.parse(next.body.toString('utf8')) : null;
    } catch (e) {
      const payload = errorPayload(e, 'Runtime.UnmarshalError', `Unable to unmarshal input: ${e.message}`);
      logError(payload);
      await postError(requestId, payload);
      continue;
    }
    let out;
    try {
      const result = await runHandler(handler, event, makeContext(next.headers));
      out = JSON.stringify(result === undefined ? null : result);
    } catch (e) {
      const payload = errorPayload(e);
      logError(payload);
      await postError(requestId, payload);
      continue;
    }
    await request('POST', `/invocation/${requestId}/response`, out, { 'Content-Type': 'application/json' });
  }
}

main().catch((e) => {
  process.stderr.write(`ember runtime failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
