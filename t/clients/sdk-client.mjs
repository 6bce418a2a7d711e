// The official MCP TypeScript SDK client (@modelcontextprotocol/sdk), driven
// one step at a time by a test (t/063-mcp-sdk.t) against the gateway's MCP
// endpoints.
//
//   node t/clients/sdk-client.mjs --url http://127.0.0.1:PORT/v1/projects/p1/mcp
//        --key KEY [--user U] [--agent A] [--elicitation-url]
//        [--session ID] [--step-timeout MS] [--timeout MS]
//
// It reads one JSON step per line on stdin and writes one JSON line per step
// on stdout, in order, so a test can act between two steps (the end user's
// consent between two calls of one session):
//
//   {"op":"connect"}                          initialize + initialized
//   {"op":"listTools"}
//   {"op":"callTool","name":"x","arguments":{}}
//   {"op":"ping"}
//   {"op":"sleep","ms":500}                   lets late answers arrive
//   {"op":"terminate"}                        DELETE the session
//   {"op":"close"}
//
// An answer is {"op","ok":true,"result",...} or {"op","ok":false,"error":
// {"class","name","code","message","data","elicitations"}}; "async_errors"
// lists what the client reported outside a step (a failed GET stream, the
// answer to a request it had given up). "timeout" in a step overrides
// --step-timeout: the SDK then sends notifications/cancelled.
// --session ID reuses a session without initialize, as the SDK does when it
// reconnects. A step is bounded by --step-timeout (15 s), the whole run by
// --timeout (60 s): then it writes {"fatal":"timeout"} and exits 2.
// Exit 3 with "SKIP ..." on stderr: the SDK is not installed.

import { createInterface } from 'node:readline';

const args = { stepTimeout: 15000, timeout: 60000 };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const next = () => process.argv[++i];
  if (a === '--url') args.url = next();
  else if (a === '--key') args.key = next();
  else if (a === '--user') args.user = next();
  else if (a === '--agent') args.agent = next();
  else if (a === '--session') args.session = next();
  else if (a === '--elicitation-url') args.elicitationUrl = true;
  else if (a === '--step-timeout') args.stepTimeout = parseInt(next(), 10);
  else if (a === '--timeout') args.timeout = parseInt(next(), 10);
  else {
    process.stderr.write(`unknown argument ${a}\n`);
    process.exit(64);
  }
}
if (!args.url) {
  process.stderr.write('--url is required\n');
  process.exit(64);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

setTimeout(() => {
  out({ fatal: 'timeout', after_ms: args.timeout });
  process.exit(2);
}, args.timeout).unref();

let Client, StreamableHTTPClientTransport;
try {
  ({ Client } = await import('@modelcontextprotocol/sdk/client/index.js'));
  ({ StreamableHTTPClientTransport } = await import(
    '@modelcontextprotocol/sdk/client/streamableHttp.js'));
} catch (e) {
  process.stderr.write(`SKIP @modelcontextprotocol/sdk cannot be loaded: ${e.message}\n`);
  process.exit(3);
}

const headers = {};
if (args.key) headers.Authorization = `Bearer ${args.key}`;
if (args.user) headers['X-Astralform-User'] = args.user;
if (args.agent) headers['X-Astralform-Agent'] = args.agent;

// URL mode elicitation as SDK 1.32.2 spells it (ClientCapabilities
// .elicitation.url); no handler is needed: the gateway never sends
// elicitation/create, it answers -32042
const capabilities = args.elicitationUrl ? { elicitation: { url: {} } } : {};

const client = new Client({ name: 'astralform-t063', version: '1.0.0' },
                          { capabilities });
const transport = new StreamableHTTPClientTransport(new URL(args.url), {
  requestInit: { headers },
  sessionId: args.session,
});

let asyncErrors = [];
client.onerror = (e) => asyncErrors.push(describe(e));

function describe(e) {
  if (!(e instanceof Error)) return { class: typeof e, message: String(e) };
  const d = {
    class: e.constructor.name,
    name: e.name,
    code: e.code,
    message: e.message,
  };
  if (e.data !== undefined) d.data = e.data;
  if ('elicitations' in e) d.elicitations = e.elicitations;
  return d;
}

const opts = (s) => ({ timeout: s?.timeout ?? args.stepTimeout });

const ops = {
  async connect(s) {
    await client.connect(transport, opts(s));
    return {
      sessionId: transport.sessionId,
      protocolVersion: transport.protocolVersion,
      serverVersion: client.getServerVersion(),
      serverCapabilities: client.getServerCapabilities(),
    };
  },
  listTools: (s) => client.listTools({}, opts(s)),
  callTool: (s) => client.callTool({ name: s.name, arguments: s.arguments ?? {} },
                                   undefined, opts(s)),
  ping: (s) => client.ping(opts(s)),
  async sleep(s) {
    await new Promise((r) => setTimeout(r, s.ms ?? 100));
    return {};
  },
  async terminate() {
    const id = transport.sessionId;
    await transport.terminateSession();
    return { terminated: id, sessionId: transport.sessionId ?? null };
  },
  async close() {
    await client.close();
    return {};
  },
};

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let n = 0;
for await (const line of rl) {
  if (!line.trim()) continue;
  n++;
  let step;
  try {
    step = JSON.parse(line);
  } catch (e) {
    out({ step: n, ok: false, error: { class: 'BadStep', message: e.message } });
    continue;
  }
  const fn = ops[step.op];
  const answer = { step: n, op: step.op };
  if (!fn) {
    answer.ok = false;
    answer.error = { class: 'BadStep', message: `unknown op ${step.op}` };
  } else {
    try {
      answer.result = await fn(step);
      answer.ok = true;
    } catch (e) {
      answer.ok = false;
      answer.error = describe(e);
    }
  }
  // a failed GET stream is reported a moment after the POST that opened it
  await new Promise((r) => setTimeout(r, 20));
  if (asyncErrors.length) {
    answer.async_errors = asyncErrors;
    asyncErrors = [];
  }
  out(answer);
}

await client.close().catch(() => {});
process.exit(0);
