#!/usr/bin/env node
// A scripted stand-in for the Anthropic Messages API, so Claude Code's CLI
// can run a slash command offline (t/064-claude-code.t): Claude Code does
// all it does for real (expands the command, lists the MCP tools, checks the
// command's allowed-tools, calls the gateway) and only the model's turns
// come from a script. Plain node:http, no dependencies.
//
//   node t/mock/anthropic.js --port N      prints "listening N"
//
//   POST /v1/messages        the model. A request that offers tools (the
//                            main loop) gets the next scripted step as a
//                            tool_use, or the text "done" when none is
//                            left; one without tools (a title, a side
//                            request) gets the text "ok". Streams (SSE)
//                            when the request says stream.
//   POST /__mock/script      {"steps": [{"tool": NAME, "input": {...}},
//                            ...]}: the model's next tool calls, in order
//   GET  /__mock/requests    every /v1/messages body received
//   DELETE /__mock/requests  forget them

'use strict';

const http = require('node:http');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : dflt;
};

let steps = [];
let requests = [];
let seq = 0;

// the main loop's requests offer tools; side requests (titles) do not
function reply(body) {
    if (!(body.tools || []).length || steps.length === 0) {
        return [{ type: 'text', text: body.tools ? 'done' : 'ok' }];
    }
    const step = steps.shift();
    return [{ type: 'tool_use', id: `toolu_mock${++seq}`,
              name: step.tool, input: step.input || {} }];
}

function message(body, content) {
    return {
        id: `msg_mock${++seq}`, type: 'message', role: 'assistant',
        model: body.model || 'mock', content,
        stop_reason: content.some((b) => b.type === 'tool_use')
            ? 'tool_use' : 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 5 },
    };
}

function sse(res, body, content) {
    const m = message(body, content);
    const send = (event, data) =>
        res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    res.writeHead(200, { 'Content-Type': 'text/event-stream',
                         'Cache-Control': 'no-cache' });
    send('message_start', { type: 'message_start',
                            message: { ...m, content: [], stop_reason: null } });
    content.forEach((b, index) => {
        if (b.type === 'text') {
            send('content_block_start', { type: 'content_block_start', index,
                                          content_block: { type: 'text', text: '' } });
            send('content_block_delta', { type: 'content_block_delta', index,
                                          delta: { type: 'text_delta', text: b.text } });
        } else {
            send('content_block_start', { type: 'content_block_start', index,
                                          content_block: { ...b, input: {} } });
            send('content_block_delta', { type: 'content_block_delta', index,
                                          delta: { type: 'input_json_delta',
                                                   partial_json: JSON.stringify(b.input) } });
        }
        send('content_block_stop', { type: 'content_block_stop', index });
    });
    send('message_delta', { type: 'message_delta',
                            delta: { stop_reason: m.stop_reason, stop_sequence: null },
                            usage: { output_tokens: 5 } });
    send('message_stop', { type: 'message_stop' });
    res.end();
}

function json(res, status, obj) {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(obj));
}

const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
        const path = req.url.split('?')[0];
        let body = {};
        try { body = raw ? JSON.parse(raw) : {}; } catch (e) { body = {}; }

        if (req.method === 'POST' && path === '/v1/messages') {
            requests.push(body);
            const content = reply(body);
            return body.stream ? sse(res, body, content)
                               : json(res, 200, message(body, content));
        }
        if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
            return json(res, 200, { input_tokens: 10 });
        }
        if (req.method === 'POST' && path === '/__mock/script') {
            steps = Array.isArray(body.steps) ? body.steps : [];
            return json(res, 200, { ok: true });
        }
        if (path === '/__mock/requests') {
            if (req.method === 'DELETE') {
                requests = [];
            }
            return json(res, 200, { requests });
        }
        return json(res, 404, { type: 'error',
                                error: { type: 'not_found_error', message: path } });
    });
});

server.listen(Number(opt('--port', 0)), opt('--host', '127.0.0.1'), () => {
    process.stdout.write(`listening ${server.address().port}\n`);
});
