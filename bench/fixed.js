// bench/fixed.js URL N CONCURRENCY [call]: send exactly N requests over
// CONCURRENCY keep-alive connections (the callgrind batches of bench/run.sh
// and bench/mock.sh, where a fixed count matters more than speed). "call"
// POSTs BENCH_BODY (default: the bench_echo tool call) with BENCH_AGENT_KEY,
// BENCH_USER and, when set, BENCH_AGENT. Prints "requests N non2xx M".
'use strict';
const http = require('node:http');
const [url, nArg, cArg, mode] = process.argv.slice(2);
const n = Number(nArg), conc = Number(cArg);
const u = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
const body = process.env.BENCH_BODY || '{"name":"bench_echo","arguments":{}}';
const opts = { host: u.hostname, port: u.port, path: u.pathname, agent,
               method: 'GET', headers: {} };
if (mode === 'call') {
    opts.method = 'POST';
    opts.headers = { 'Content-Type': 'application/json',
                     'Content-Length': Buffer.byteLength(body),
                     'Authorization': 'Bearer ' + process.env.BENCH_AGENT_KEY,
                     'X-Astralform-User': process.env.BENCH_USER || 'u1' };
    if (process.env.BENCH_AGENT)
        opts.headers['X-Astralform-Agent'] = process.env.BENCH_AGENT;
}
let sent = 0, done = 0, bad = 0;
function one() {
    if (sent >= n) return;
    sent++;
    const req = http.request(opts, (res) => {
        res.resume();
        res.on('end', () => {
            if (res.statusCode < 200 || res.statusCode > 299) bad++;
            if (++done === n) finish(); else one();
        });
    });
    req.on('error', () => { bad++; if (++done === n) finish(); else one(); });
    if (mode === 'call') req.end(body); else req.end();
}
function finish() {
    console.log(`requests ${done} non2xx ${bad}`);
    agent.destroy();
}
for (let i = 0; i < conc; i++) one();
