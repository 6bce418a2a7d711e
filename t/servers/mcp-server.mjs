#!/usr/bin/env node
// A real MCP server for the ngx_astralform_module test suite, built with the
// official TypeScript SDK (@modelcontextprotocol/sdk), speaking streamable HTTP
// in stateful mode (sessions carried in Mcp-Session-Id).
//
//   node t/servers/mcp-server.mjs --port N [--host 127.0.0.1] [--json]
//                                 [--keepalive-ms MS] [--quiet]
//
// Endpoints (see README.md next to this file):
//   POST|GET|DELETE /mcp        answers as text/event-stream (or JSON with --json)
//   POST|GET|DELETE /mcp-sse    always text/event-stream answers
//   POST|GET|DELETE /mcp-json   always application/json answers (enableJsonResponse)
//   POST /__mcp/drop-sessions   forget every session (old Mcp-Session-Id -> 404)
//   GET  /__mcp/stats           counters and the last request's headers
//   POST /__mcp/reset-stats     zero the counters
//
// Prints "listening N" on stdout once the socket accepts connections.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', json: false, keepaliveMs: undefined, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--port': opts.port = Number(val()); break;
      case '--host': opts.host = val(); break;
      case '--json': opts.json = true; break;
      case '--keepalive-ms': opts.keepaliveMs = Number(val()); break;
      case '--quiet': opts.quiet = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown option ${a}`);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage('bad --port');
  if (opts.keepaliveMs !== undefined && !Number.isFinite(opts.keepaliveMs)) usage('bad --keepalive-ms');
  return opts;
}

function usage(msg) {
  if (msg) process.stderr.write(`mcp-server: ${msg}\n`);
  process.stderr.write('usage: node mcp-server.mjs --port N [--host H] [--json] [--keepalive-ms MS] [--quiet]\n');
  process.exit(msg ? 2 : 0);
}

const opts = parseArgs(process.argv.slice(2));
const log = (...a) => { if (!opts.quiet) process.stderr.write(`mcp-server: ${a.join(' ')}\n`); };

// ---------------------------------------------------------------- stats

function freshStats() {
  return {
    started_at: new Date().toISOString(),
    http_requests: 0,
    initialize: 0,
    initialized_notifications: 0,
    tools_list: 0,
    tools_call: 0,
    tools_call_by_name: {},
    messages: 0,
    sessions_created: 0,
    sessions_deleted: 0,
    sessions_dropped: 0,
    unknown_session_404: 0,
    by_endpoint: {},
    last_request: null,
    last_message: null,
  };
}
let stats = freshStats();

// ---------------------------------------------------------------- the MCP server

function buildServer() {
  const server = new McpServer(
    { name: 'astralform-test-mcp', version: '1.0.0' },
    { capabilities: { tools: {} } },
  );

  server.registerTool('echo', {
    title: 'Echo',
    description: 'Echo the given text back.',
    inputSchema: { text: z.string().describe('Text to echo') },
  }, async ({ text }) => ({
    content: [{ type: 'text', text }],
  }));

  server.registerTool('add', {
    title: 'Add',
    description: 'Add two numbers.',
    inputSchema: { a: z.number().describe('First addend'), b: z.number().describe('Second addend') },
  }, async ({ a, b }) => ({
    content: [{ type: 'text', text: String(a + b) }],
  }));

  server.registerTool('slow', {
    title: 'Slow',
    description: 'Sleep for the given number of milliseconds, then answer.',
    inputSchema: { ms: z.number().int().min(0).max(600000).describe('Milliseconds to sleep') },
  }, async ({ ms }, extra) => {
    try {
      await sleep(ms, undefined, { signal: extra.signal });
    } catch {
      // cancelled by the client (notifications/cancelled) or the session went away
      return { content: [{ type: 'text', text: `cancelled` }], isError: true };
    }
    return { content: [{ type: 'text', text: `slept ${ms} ms` }] };
  });

  server.registerTool('fail', {
    title: 'Fail',
    description: 'Always fails: answers with isError true.',
    inputSchema: { message: z.string().optional().describe('Error text to return') },
  }, async ({ message }) => ({
    content: [{ type: 'text', text: message ?? 'the fail tool failed, as asked' }],
    isError: true,
  }));

  return server;
}

// ---------------------------------------------------------------- sessions

// sessionId -> { transport, server, endpoint }
const sessions = new Map();

const ENDPOINTS = {
  '/mcp': { json: opts.json },
  '/mcp-sse': { json: false },
  '/mcp-json': { json: true },
};

function countMessage(endpoint, msg) {
  const list = Array.isArray(msg) ? msg : [msg];
  for (const m of list) {
    if (!m || typeof m !== 'object') continue;
    stats.messages++;
    stats.last_message = m;
    switch (m.method) {
      case 'initialize': stats.initialize++; break;
      case 'notifications/initialized': stats.initialized_notifications++; break;
      case 'tools/list': stats.tools_list++; break;
      case 'tools/call': {
        stats.tools_call++;
        const name = m.params?.name ?? '';
        stats.tools_call_by_name[name] = (stats.tools_call_by_name[name] ?? 0) + 1;
        break;
      }
      default: break;
    }
  }
}

async function newSession(endpoint, json) {
  const server = buildServer();
  const inflight = new Set(); // responses of requests in progress on this session
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    enableJsonResponse: json,
    ...(opts.keepaliveMs !== undefined ? { keepAliveMs: opts.keepaliveMs } : {}),
    onsessioninitialized: (sid) => {
      sessions.set(sid, { transport, server, endpoint, inflight });
      stats.sessions_created++;
      log(`session ${sid} opened on ${endpoint}`);
    },
    onsessionclosed: (sid) => {
      stats.sessions_deleted++;
      log(`session ${sid} deleted by the client`);
    },
  });
  transport.onclose = () => {
    const sid = transport.sessionId;
    if (sid && sessions.get(sid)?.transport === transport) sessions.delete(sid);
    // SSE answers in progress are ended by the SDK (an empty event stream).
    // A JSON-mode answer in progress would hang for ever in the SDK once its
    // transport is closed: reset its connection, as a restarted server would.
    setImmediate(() => {
      for (const res of inflight) if (!res.headersSent && !res.writableEnded) res.destroy();
    });
  };
  await server.connect(transport);
  // Count the messages the SDK accepted (after its own header/JSON-RPC checks).
  const onmessage = transport.onmessage;
  transport.onmessage = (message, extra) => {
    countMessage(endpoint, message);
    return onmessage?.(message, extra);
  };
  return { transport, server };
}

function jsonRpcError(res, status, code, message) {
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function handleMcp(req, res, endpoint, json) {
  const sid = req.headers['mcp-session-id'];
  if (sid !== undefined) {
    const s = sessions.get(Array.isArray(sid) ? sid[0] : sid);
    if (!s || s.endpoint !== endpoint) {
      // What the SDK's transport itself answers for a session it no longer has.
      stats.unknown_session_404++;
      return jsonRpcError(res, 404, -32001, 'Session not found');
    }
    s.inflight.add(res);
    res.on('close', () => s.inflight.delete(res));
    return s.transport.handleRequest(req, res);
  }
  // No session header: a fresh transport decides, exactly as the SDK does
  // (initialize opens a session; anything else is 400 "Server not
  // initialized"; bad Accept is 406; bad Content-Type is 415; ...).
  const { transport, server } = await newSession(endpoint, json);
  await transport.handleRequest(req, res);
  if (transport.sessionId === undefined) {
    // The request did not open a session: nothing will ever reach this pair.
    await server.close().catch(() => {});
  }
}

// ---------------------------------------------------------------- test hooks

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj, null, 1);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

async function dropSessions() {
  const all = [...sessions.values()];
  sessions.clear();
  for (const { server } of all) {
    // closes the transport too: open SSE streams end, pending requests fail
    await server.close().catch(() => {});
  }
  stats.sessions_dropped += all.length;
  return all.length;
}

async function handleHook(req, res, path) {
  if (path === '/__mcp/stats' && req.method === 'GET') {
    return sendJson(res, 200, { ...stats, active_sessions: sessions.size });
  }
  if (path === '/__mcp/drop-sessions' && req.method === 'POST') {
    const dropped = await dropSessions();
    log(`dropped ${dropped} session(s)`);
    return sendJson(res, 200, { dropped });
  }
  if (path === '/__mcp/reset-stats' && req.method === 'POST') {
    stats = freshStats();
    return sendJson(res, 200, { ok: true });
  }
  return sendJson(res, 404, { error: 'not_found' });
}

// ---------------------------------------------------------------- HTTP server

const httpServer = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const path = url.pathname;
  try {
    if (path.startsWith('/__mcp/')) return await handleHook(req, res, path);
    const ep = ENDPOINTS[path];
    if (!ep) return sendJson(res, 404, { error: 'not_found', message: `no route for ${path}` });
    stats.http_requests++;
    stats.by_endpoint[path] = (stats.by_endpoint[path] ?? 0) + 1;
    stats.last_request = { method: req.method, path: req.url, headers: req.headers, at: new Date().toISOString() };
    await handleMcp(req, res, path, ep.json);
  } catch (err) {
    log(`error on ${req.method} ${path}: ${err?.stack ?? err}`);
    if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal server error');
    else res.destroy();
  }
});

httpServer.keepAliveTimeout = 30000;
httpServer.listen(opts.port, opts.host, () => {
  const { port } = httpServer.address();
  process.stdout.write(`listening ${port}\n`);
  log(`MCP endpoints on http://${opts.host}:${port}/mcp (${opts.json ? 'json' : 'sse'}), /mcp-sse, /mcp-json`);
});

async function shutdown() {
  await dropSessions().catch(() => {});
  httpServer.closeAllConnections?.();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
