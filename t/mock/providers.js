#!/usr/bin/env node
// Mock of the third-party providers the gateway talks to: Slack, Notion,
// GitHub and OpenWeather, in one plain node:http server (no dependencies).
//
//   node t/mock/providers.js --port N [--host 127.0.0.1] [--verbose]
//                            [--max-log 20000] [--max-body 1048576]
//
// Prints "listening N" on stdout once it accepts connections (N is the real
// port, so --port 0 picks a free one).
//
// Each provider lives under its own path prefix, so the gateway's
// `astralform_provider SLUG api_base=.. authorize_url=.. token_url=..
// revoke_url=..` overrides can point at it (see t/mock/README.md):
//
//   /slack/oauth/v2/authorize      /slack/api/oauth.v2.access
//   /slack/api/auth.revoke         /slack/api/<method>
//   /notion/v1/oauth/authorize     /notion/v1/oauth/token
//   /notion/v1/oauth/revoke        /notion/v1/...
//   /github/login/oauth/authorize  /github/login/oauth/access_token
//   /github/api/applications/{client_id}/grant   /github/api/...
//   /openweather/data/2.5/weather
//   /bench/echo                    (benchmark pass-through)
//   /__mock/...                    (control API for tests)
//
// Every quirk reproduced here is commented with the real behaviour it mimics.
// Where the providers' documentation does not say exactly what they answer,
// the comment says "mock's choice".

'use strict';

const http = require('node:http');
const crypto = require('node:crypto');

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const ARGS = { port: 0, host: '127.0.0.1', verbose: false, maxLog: 20000, maxBody: 1024 * 1024 };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const next = () => process.argv[++i];
  if (a === '--port') ARGS.port = parseInt(next(), 10);
  else if (a === '--host') ARGS.host = next();
  else if (a === '--verbose' || a === '-v') ARGS.verbose = true;
  else if (a === '--max-log') ARGS.maxLog = parseInt(next(), 10);
  else if (a === '--max-body') ARGS.maxBody = parseInt(next(), 10);
  else if (a === '--help' || a === '-h') {
    process.stdout.write('usage: node providers.js --port N [--host H] [--verbose] [--max-log N] [--max-body BYTES]\n');
    process.exit(0);
  } else {
    process.stderr.write(`providers.js: unknown argument ${a}\n`);
    process.exit(2);
  }
}
if (!Number.isInteger(ARGS.port) || ARGS.port < 0 || ARGS.port > 65535) {
  process.stderr.write('providers.js: --port needs a number 0..65535\n');
  process.exit(2);
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const now = () => Date.now();
const nowSec = () => Math.floor(Date.now() / 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
function randAlnum(n) {
  const bytes = crypto.randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += ALNUM[bytes[i] % ALNUM.length];
  return s;
}
const randHex = (n) => crypto.randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);
const randDigits = (n) => Array.from(crypto.randomBytes(n), (b) => String(b % 10)).join('');
const uuid = () => crypto.randomUUID();
const isoNow = () => new Date().toISOString();

function b64url(buf) {
  return buf.toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
function s256(verifier) {
  return b64url(crypto.createHash('sha256').update(verifier, 'ascii').digest());
}

// URLSearchParams -> plain object; a repeated key becomes an array.
function paramsToObject(sp) {
  const out = {};
  for (const [k, v] of sp) {
    if (k in out) out[k] = [].concat(out[k], v);
    else out[k] = v;
  }
  return out;
}
const firstOf = (v) => (Array.isArray(v) ? v[0] : v);

function parseJSON(text) {
  try { return { ok: true, value: JSON.parse(text) }; } catch (e) { return { ok: false, error: e.message }; }
}

// Authorization: Basic base64(id:secret). Returns {user, pass} or null.
function basicAuth(req) {
  const h = req.headers.authorization || '';
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(h);
  if (!m) return null;
  const dec = Buffer.from(m[1], 'base64').toString('utf8');
  const i = dec.indexOf(':');
  if (i < 0) return null;
  return { user: dec.slice(0, i), pass: dec.slice(i + 1) };
}

// Authorization: Bearer X (GitHub also takes the older "token X").
function bearerToken(req, allowTokenScheme = false) {
  const h = req.headers.authorization || '';
  const m = (allowTokenScheme ? /^(?:Bearer|token)\s+(\S+)\s*$/i : /^Bearer\s+(\S+)\s*$/i).exec(h);
  return m ? m[1] : null;
}

function contentTypeIs(req, type) {
  return String(req.headers['content-type'] || '').toLowerCase().split(';')[0].trim() === type;
}

// Send a response. An object body is sent as JSON.
function send(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  let payload = body;
  const h = { ...headers };
  const hasCT = Object.keys(h).some((k) => k.toLowerCase() === 'content-type');
  if (body === undefined || body === null) payload = '';
  else if (typeof body !== 'string' && !Buffer.isBuffer(body)) {
    payload = JSON.stringify(body);
    if (!hasCT) h['Content-Type'] = 'application/json; charset=utf-8';
  } else if (!hasCT && payload.length) {
    h['Content-Type'] = 'text/plain; charset=utf-8';
  }
  h['Content-Length'] = Buffer.byteLength(payload);
  res.writeHead(status, h);
  res.end(payload);
}

function sendHTML(res, status, title, text) {
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  send(res, status, `<!doctype html><html><head><title>${esc(title)}</title></head><body><h1>${esc(title)}</h1><p>${esc(text)}</p></body></html>\n`,
    { 'Content-Type': 'text/html; charset=utf-8' });
}

// 302 to redirect_uri with extra query parameters, keeping any query the
// redirect URI already has (all three providers do this).
function redirectWith(res, redirectUri, params) {
  let u;
  try { u = new URL(redirectUri); } catch (e) { return sendHTML(res, 400, 'Bad redirect_uri', 'redirect_uri is not an absolute URL'); }
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) u.searchParams.append(k, v);
  res.writeHead(302, { Location: u.toString(), 'Content-Length': 0, 'Cache-Control': 'no-store' });
  res.end();
}

// ---------------------------------------------------------------------------
// Mock state
// ---------------------------------------------------------------------------

const DEFAULT_CONFIG = {
  // Slack with token rotation on: access tokens are xoxe.xoxp-.. and expire
  // after 12 h (expires_in 43200); refresh tokens are xoxe-1-...
  slack: { token_rotation: true, access_ttl: 43200, always_bot_token: true },
  // Notion: access tokens do not expire (access_ttl 0: no expires_in sent);
  // a refresh rotates both tokens, and by default the access token paired
  // with the used refresh token stops working at once.
  notion: { access_ttl: 0, refresh_revokes_old_access: true },
  // GitHub with expiring user tokens (ghu_ / ghr_, 8 h / ~6 months). Off:
  // classic OAuth app tokens (gho_), no refresh token, no expiry.
  github: { expiring_tokens: true, access_ttl: 28800, refresh_ttl: 15897600, enforce_rate_limits: false },
  // Client credentials: a client_id registered through /__mock/clients must
  // present its secret; unregistered ids are accepted with any non-empty
  // secret unless strict_clients is on.
  strict_clients: false,
  // Authorization codes live 10 minutes on all three providers.
  code_ttl: 600,
};

let S; // the whole mutable state, rebuilt by resetAll()

function freshStats() {
  return {
    started_at: isoNow(),
    connections_accepted: 0,   // every TCP connection, control ones included
    connections: 0,            // connections that carried at least one provider/bench request
    connections_by_prefix: {}, // e.g. {"slack": 2}: connections that carried a /slack request
    requests_total: 0,         // provider + bench requests (control requests not counted)
    requests: {},              // "METHOD /path" -> count
    requests_by_prefix: {},    // "slack" -> count
    grants: {},                // "slack:authorization_code" -> count (successful or not)
    grants_ok: {},             // same, successful only
  };
}

// Connections opened before a reset are counted again when they carry a
// request after it.
let connGen = 1;

function resetLog() {
  S.requests = [];
  S.stats = freshStats();
  S.rules = [];
  connGen++;
}

function resetAll() {
  S = {
    requests: [], nextReqId: 1, stats: freshStats(), rules: [], nextRuleId: 1,
    tokens: new Map(),   // token string -> record
    codes: new Map(),    // authorization code -> record
    clients: new Map(),  // "provider:client_id" -> secret
    config: JSON.parse(JSON.stringify(DEFAULT_CONFIG)),
    rate: new Map(),     // GitHub rate-limit windows per token/resource
    data: buildFixtures(),
  };
  // A fixed OpenWeather key for hand testing with curl.
  remember({ token: 'mock-openweather-key', provider: 'openweather', kind: 'api_key', user: null, scopes: [] });
}

function deepMerge(dst, src) {
  for (const [k, v] of Object.entries(src || {})) {
    if (v && typeof v === 'object' && !Array.isArray(v) && dst[k] && typeof dst[k] === 'object') deepMerge(dst[k], v);
    else dst[k] = v;
  }
  return dst;
}

// ---------------------------------------------------------------------------
// Tokens and codes (shared by the providers)
// ---------------------------------------------------------------------------

// Token record: { token, provider, kind: access|refresh|api_key, user, team,
//   client_id, scopes[], token_type, created, expires_at (ms|null),
//   revoked, used (refresh tokens: consumed by a rotation), pair, rotated_to }
function remember(rec) {
  const full = {
    client_id: null, team: null, token_type: null, expires_at: null, revoked: false, used: false,
    pair: null, rotated_to: null, created: now(), ...rec,
  };
  S.tokens.set(full.token, full);
  return full;
}

function tokenStatus(rec) {
  if (!rec) return 'unknown';
  if (rec.revoked) return 'revoked';
  if (rec.used) return 'used';
  if (rec.expires_at !== null && rec.expires_at <= now()) return 'expired';
  return 'active';
}

// Check an API credential. Returns {status, rec}; status is one of
// missing | invalid | revoked | expired | ok.
function checkAccess(provider, token, kinds = ['access']) {
  if (!token) return { status: 'missing', rec: null };
  const rec = S.tokens.get(token);
  if (!rec || rec.provider !== provider || !kinds.includes(rec.kind)) return { status: 'invalid', rec: null };
  const st = tokenStatus(rec);
  if (st === 'revoked' || st === 'used') return { status: 'revoked', rec };
  if (st === 'expired') return { status: 'expired', rec };
  return { status: 'ok', rec };
}

function revokeWithPair(rec) {
  if (!rec) return;
  rec.revoked = true;
  if (rec.pair && S.tokens.has(rec.pair)) S.tokens.get(rec.pair).revoked = true;
}

function publicToken(rec) {
  return {
    token: rec.token, provider: rec.provider, kind: rec.kind, status: tokenStatus(rec), user: rec.user,
    client_id: rec.client_id, scopes: rec.scopes, token_type: rec.token_type,
    expires_at: rec.expires_at === null ? null : new Date(rec.expires_at).toISOString(),
    pair: rec.pair, rotated_to: rec.rotated_to, created: new Date(rec.created).toISOString(),
  };
}

function checkClient(provider, id, secret) {
  if (!id) return 'missing_client';
  const key = `${provider}:${id}`;
  if (S.clients.has(key)) return S.clients.get(key) === secret ? 'ok' : 'bad_secret';
  if (S.config.strict_clients) return 'unknown_client';
  return secret ? 'ok' : 'bad_secret';
}

function newCode(provider, fields) {
  let code;
  // Code shapes as the providers issue them.
  if (provider === 'slack') code = `${randDigits(10)}.${randDigits(13)}.${randHex(64)}`;
  else if (provider === 'github') code = randHex(20);
  else code = uuid();
  const rec = { code, provider, created: now(), expires_at: now() + S.config.code_ttl * 1000, used: false, ...fields };
  S.codes.set(code, rec);
  return rec;
}

// Look up a code for redemption. Returns {rec} or {error: reason}.
function takeCode(provider, code, clientId) {
  const rec = code ? S.codes.get(code) : null;
  if (!rec || rec.provider !== provider) return { error: 'unknown' };
  if (rec.used) return { error: 'used', rec };
  if (rec.expires_at <= now()) return { error: 'expired', rec };
  if (clientId && rec.client_id !== clientId) return { error: 'client_mismatch', rec };
  return { rec };
}

function checkPkce(rec, verifier) {
  if (!rec.code_challenge) return true; // no challenge sent: verifier ignored
  if (!verifier) return false;
  if ((rec.code_challenge_method || 'plain').toUpperCase() === 'S256') return s256(verifier) === rec.code_challenge;
  return verifier === rec.code_challenge;
}

function countGrant(provider, grant, ok) {
  const k = `${provider}:${grant}`;
  if (ok === undefined) S.stats.grants[k] = (S.stats.grants[k] || 0) + 1;
  else if (ok) S.stats.grants_ok[k] = (S.stats.grants_ok[k] || 0) + 1;
}

// ---------------------------------------------------------------------------
// Fixtures: the data the mock APIs serve
// ---------------------------------------------------------------------------

function buildFixtures() {
  const team = { id: 'T0MOCKTEAM1', name: 'Mock Workspace', domain: 'mockworkspace' };
  const slackUsers = {
    U0MOCKUSER1: 'mock.user',
    U0ALICE0001: 'alice',
    U0BOB000001: 'bob',
  };
  const base = { is_ext_shared: false, is_org_shared: false, is_shared: false, is_pending_ext_shared: false, pending_shared: [], unlinked: 0, context_team_id: team.id, parent_conversation: null, shared_team_ids: [team.id] };
  const ch = (id, name, o = {}) => ({
    id, name, name_normalized: name, is_channel: !o.is_private, is_group: !!o.is_private && !o.is_mpim, is_im: false, is_mpim: !!o.is_mpim,
    is_private: !!o.is_private, created: 1600000000 + id.charCodeAt(3) * 1000, is_archived: !!o.is_archived, is_general: !!o.is_general,
    creator: 'U0ALICE0001', is_member: o.is_member !== false, num_members: o.num_members || 3,
    topic: { value: o.topic || '', creator: o.topic ? 'U0ALICE0001' : '', last_set: o.topic ? 1600000500 : 0 },
    purpose: { value: o.purpose || '', creator: o.purpose ? 'U0ALICE0001' : '', last_set: o.purpose ? 1600000500 : 0 },
    previous_names: [], updated: 1700000000000, ...base, _type: o._type || (o.is_private ? 'private_channel' : 'public_channel'),
  });
  const channels = [
    ch('C0GENERAL01', 'general', { is_general: true, topic: 'Company-wide announcements', purpose: 'This is the one channel that will always include everyone.' }),
    ch('C0RANDOM001', 'random', { purpose: 'Non-work banter and water cooler conversation' }),
    ch('C0ENGINEER1', 'engineering', { topic: 'Deploys, incidents, reviews', num_members: 5 }),
    ch('C0NOTJOINED', 'not-joined', { is_member: false, purpose: 'A public channel the mock user has not joined' }),
    ch('C0ARCHIVED1', 'old-project', { is_archived: true, purpose: 'Archived long ago' }),
    ch('C0DESIGN001', 'design', { is_private: true, num_members: 2 }),
    ch('G0MPIM00001', 'mpdm-mock.user--alice--bob-1', { is_private: true, is_mpim: true, _type: 'mpim' }),
    // A direct message conversation has a different, smaller shape.
    { id: 'D0DMALICE01', created: 1600001000, is_archived: false, is_im: true, is_org_shared: false, context_team_id: team.id, updated: 1700000000000, user: 'U0ALICE0001', is_user_deleted: false, priority: 0, _type: 'im' },
  ];
  const messages = [
    { channel: 'C0GENERAL01', user: 'U0ALICE0001', ts: '1700000100.000100', text: 'Welcome to the mock workspace!' },
    { channel: 'C0GENERAL01', user: 'U0BOB000001', ts: '1700000200.000200', text: 'Quarterly budget review on Friday at 10:00' },
    { channel: 'C0ENGINEER1', user: 'U0MOCKUSER1', ts: '1700000300.000300', text: 'Deploy of v2.3 finished, the budget dashboards are green' },
    { channel: 'C0RANDOM001', user: 'U0BOB000001', ts: '1700000400.000400', text: 'Who wants pizza for lunch?' },
    { channel: 'C0DESIGN001', user: 'U0ALICE0001', ts: '1700000500.000500', text: 'New logo drafts are in Figma' },
    { channel: 'C0NOTJOINED', user: 'U0ALICE0001', ts: '1700000600.000600', text: 'Secret budget talk in a channel you did not join' },
  ];

  // Notion: a small workspace shared with the integration.
  const nUser = { object: 'user', id: '6a0f7c3e-5b7d-4e2b-9c1d-2f3e4a5b6c7d' };
  const p = (id, title, parent, extra = {}) => ({
    object: 'page', id, created_time: '2024-01-10T09:00:00.000Z', last_edited_time: extra.edited || '2024-03-01T12:00:00.000Z',
    created_by: nUser, last_edited_by: nUser, cover: null, icon: extra.icon || null, parent, archived: false, in_trash: false,
    properties: extra.properties || { title: { id: 'title', type: 'title', title: richText(title) } },
    url: notionUrl(title, id), public_url: null,
  });
  const HOME = '11111111-2222-4333-8444-555555555555';
  const NOTES = '22222222-3333-4444-8555-666666666666';
  const ROADMAP = '33333333-4444-4555-8666-777777777777';
  const TASKS_DB = '44444444-5555-4666-8777-888888888888';
  const ROW1 = '55555555-6666-4777-8888-999999999999';
  const pages = new Map();
  pages.set(HOME, p(HOME, 'Team Home', { type: 'workspace', workspace: true }, { icon: { type: 'emoji', emoji: '🏠' }, edited: '2024-03-05T08:00:00.000Z' }));
  pages.set(NOTES, p(NOTES, 'Meeting notes', { type: 'page_id', page_id: HOME }, { edited: '2024-03-04T08:00:00.000Z' }));
  pages.set(ROADMAP, p(ROADMAP, 'Roadmap 2024', { type: 'page_id', page_id: HOME }, { edited: '2024-03-03T08:00:00.000Z' }));
  pages.set(ROW1, p(ROW1, 'Write the mock server', { type: 'database_id', database_id: TASKS_DB }, {
    edited: '2024-03-02T08:00:00.000Z',
    properties: {
      Name: { id: 'title', type: 'title', title: richText('Write the mock server') },
      Status: { id: 'stat', type: 'select', select: { id: 'opt1', name: 'In progress', color: 'blue' } },
      Due: { id: 'due', type: 'date', date: { start: '2024-04-01', end: null, time_zone: null } },
    },
  }));
  const databases = new Map();
  databases.set(TASKS_DB, {
    object: 'database', id: TASKS_DB, created_time: '2024-01-11T09:00:00.000Z', last_edited_time: '2024-03-02T09:00:00.000Z',
    created_by: nUser, last_edited_by: nUser, title: richText('Tasks'), description: [], icon: null, cover: null,
    properties: {
      Name: { id: 'title', name: 'Name', type: 'title', title: {} },
      Status: { id: 'stat', name: 'Status', type: 'select', select: { options: [{ id: 'opt1', name: 'In progress', color: 'blue' }, { id: 'opt2', name: 'Done', color: 'green' }] } },
      Due: { id: 'due', name: 'Due', type: 'date', date: {} },
    },
    parent: { type: 'page_id', page_id: HOME }, url: notionUrl('Tasks', TASKS_DB), public_url: null, archived: false, in_trash: false, is_inline: false,
  });

  // GitHub: the mock user, a few repositories and issues.
  const ghUser = { login: 'mock-user', id: 1001, node_id: 'U_kgDOAAAD6Q', type: 'User', site_admin: false, name: 'Mock User', email: 'mock-user@example.com' };
  const owner = (login, id, type = 'User') => ({ login, id, node_id: `MDQ6${login}`, avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`, url: `https://api.github.com/users/${login}`, html_url: `https://github.com/${login}`, type, site_admin: false });
  const repo = (id, ownerObj, name, o) => ({
    id, node_id: `R_kgDO${id}`, name, full_name: `${ownerObj.login}/${name}`, private: o.visibility !== 'public', owner: ownerObj,
    html_url: `https://github.com/${ownerObj.login}/${name}`, description: o.description || null, fork: false,
    url: `https://api.github.com/repos/${ownerObj.login}/${name}`, created_at: o.created, updated_at: o.updated, pushed_at: o.pushed,
    homepage: null, size: 120, stargazers_count: o.stars || 0, watchers_count: o.stars || 0, language: o.language || null,
    has_issues: true, forks_count: 0, archived: false, disabled: false, open_issues_count: 0, license: null, topics: [],
    visibility: o.visibility, forks: 0, open_issues: 0, watchers: o.stars || 0, default_branch: 'main',
    permissions: o.permissions, _affiliation: o.affiliation,
  });
  const me = owner('mock-user', 1001);
  const acme = owner('acme', 2001, 'Organization');
  const friend = owner('octo-friend', 3001);
  const full = { admin: true, maintain: true, push: true, triage: true, pull: true };
  const write = { admin: false, maintain: false, push: true, triage: true, pull: true };
  const repos = [
    repo(5001, me, 'hello-world', { visibility: 'public', affiliation: 'owner', description: 'My first repository', language: 'C', stars: 12, created: '2021-01-01T10:00:00Z', updated: '2024-02-01T10:00:00Z', pushed: '2024-02-01T10:00:00Z', permissions: full }),
    repo(5002, me, 'secret-project', { visibility: 'private', affiliation: 'owner', description: 'Not for everyone', language: 'Go', created: '2022-05-01T10:00:00Z', updated: '2024-03-01T10:00:00Z', pushed: '2024-03-02T10:00:00Z', permissions: full }),
    repo(5003, acme, 'platform', { visibility: 'private', affiliation: 'organization_member', description: 'ACME platform monorepo', language: 'TypeScript', created: '2020-03-01T10:00:00Z', updated: '2024-03-03T10:00:00Z', pushed: '2024-03-03T12:00:00Z', permissions: write }),
    repo(5004, acme, 'docs', { visibility: 'public', affiliation: 'organization_member', description: 'ACME documentation', language: 'Markdown', stars: 40, created: '2020-04-01T10:00:00Z', updated: '2023-12-01T10:00:00Z', pushed: '2023-12-01T10:00:00Z', permissions: write }),
    repo(5005, friend, 'shared-lib', { visibility: 'public', affiliation: 'collaborator', description: 'A library mock-user helps with', language: 'Rust', stars: 3, created: '2023-01-01T10:00:00Z', updated: '2024-01-15T10:00:00Z', pushed: '2024-01-15T10:00:00Z', permissions: write }),
  ];
  let issueId = 9000;
  const issue = (repoObj, number, title, o) => {
    const api = `https://api.github.com/repos/${repoObj.full_name}/issues/${number}`;
    const it = {
      url: api, repository_url: repoObj.url, labels_url: `${api}/labels{/name}`, comments_url: `${api}/comments`, events_url: `${api}/events`,
      html_url: `https://github.com/${repoObj.full_name}/${o.pr ? 'pull' : 'issues'}/${number}`, id: ++issueId, node_id: `I_kwDO${issueId}`, number, title,
      user: o.user || me, labels: (o.labels || []).map((n, i) => ({ id: 100 + i, node_id: `LA_${n}`, url: `${repoObj.url}/labels/${n}`, name: n, color: 'd73a4a', default: n === 'bug', description: null })),
      state: o.state || 'open', locked: false, assignee: null, assignees: [], milestone: null, comments: o.comments || 0,
      created_at: o.created, updated_at: o.updated || o.created, closed_at: o.state === 'closed' ? o.updated : null,
      author_association: 'OWNER', active_lock_reason: null, body: o.body || null, reactions: { total_count: o.reactions || 0 },
      state_reason: o.state === 'closed' ? 'completed' : null, score: 1.0,
      _repo: repoObj.full_name, _private: repoObj.private,
    };
    if (o.pr) it.pull_request = { url: `${repoObj.url}/pulls/${number}`, html_url: it.html_url, diff_url: `${it.html_url}.diff`, patch_url: `${it.html_url}.patch`, merged_at: null };
    return it;
  };
  const [hello, secret, platform, docs] = repos;
  const issues = [
    issue(hello, 1, 'Crash on startup when config is empty', { labels: ['bug'], comments: 3, reactions: 5, created: '2024-01-05T10:00:00Z', updated: '2024-02-01T10:00:00Z', body: 'Segfault in main() when the config file has no lines.' }),
    issue(hello, 2, 'Add a --verbose flag', { labels: ['enhancement'], created: '2024-01-06T10:00:00Z', body: 'It would help debugging.' }),
    issue(hello, 3, 'Fix crash on startup', { pr: true, comments: 1, created: '2024-01-07T10:00:00Z', updated: '2024-01-08T10:00:00Z', body: 'Fixes #1' }),
    issue(hello, 4, 'Typo in README', { state: 'closed', labels: ['documentation'], created: '2023-11-01T10:00:00Z', updated: '2023-11-02T10:00:00Z' }),
    issue(secret, 1, 'Secret roadmap crash', { labels: ['bug'], created: '2024-02-10T10:00:00Z', body: 'Only visible with the repo scope.' }),
    issue(platform, 42, 'Login page crash on Safari', { labels: ['bug', 'frontend'], comments: 7, reactions: 2, created: '2024-03-01T10:00:00Z', updated: '2024-03-03T10:00:00Z', user: owner('alice-acme', 4001) }),
    issue(docs, 7, 'Document the rate limits', { labels: ['documentation'], created: '2023-12-01T10:00:00Z' }),
  ];

  // OpenWeather: a few cities (temperatures in Kelvin, as the API stores them).
  const cities = [
    { id: 2643743, name: 'London', country: 'GB', coord: { lon: -0.1257, lat: 51.5085 }, tz: 0, kelvin: 284.15, humidity: 81, pressure: 1012, wind: 4.12, deg: 240, clouds: 75, weather: 803 },
    { id: 2988507, name: 'Paris', country: 'FR', coord: { lon: 2.3488, lat: 48.8534 }, tz: 3600, kelvin: 287.45, humidity: 66, pressure: 1015, wind: 3.09, deg: 200, clouds: 0, weather: 800 },
    { id: 1850147, name: 'Tokyo', country: 'JP', coord: { lon: 139.6917, lat: 35.6895 }, tz: 32400, kelvin: 291.2, humidity: 55, pressure: 1018, wind: 2.57, deg: 90, clouds: 20, weather: 801 },
    { id: 5128581, name: 'New York', country: 'US', state: 'NY', coord: { lon: -74.006, lat: 40.7143 }, tz: -18000, kelvin: 279.8, humidity: 70, pressure: 1020, wind: 5.66, deg: 310, clouds: 100, weather: 500 },
  ];

  return {
    slack: { team, users: slackUsers, channels, messages, lastTs: 1700001000 },
    notion: { user: nUser, pages, databases, workspace: { id: '0f0e0d0c-0b0a-4909-8807-060504030201', name: 'Mock Workspace' } },
    github: { user: ghUser, repos, issues },
    openweather: { cities },
  };
}

function richText(text) {
  return [{ type: 'text', text: { content: text, link: null }, annotations: { bold: false, italic: false, strikethrough: false, underline: false, code: false, color: 'default' }, plain_text: text, href: null }];
}
function notionUrl(title, id) {
  const slug = String(title).replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
  return `https://www.notion.so/${slug ? slug + '-' : ''}${id.replace(/-/g, '')}`;
}

// Strip the mock's private "_" fields before answering.
function clean(obj) {
  if (Array.isArray(obj)) return obj.map(clean);
  if (!obj || typeof obj !== 'object') return obj;
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (!k.startsWith('_')) out[k] = v;
  return out;
}

// ---------------------------------------------------------------------------
// The server: request intake, logging, behaviour rules, routing
// ---------------------------------------------------------------------------

const server = http.createServer();
// Keep idle connections open like the real APIs do (behind their load
// balancers idle keep-alive is about a minute), so the gateway's connection
// cache is exercised; Node's default of 5 s would hide reuse problems.
server.keepAliveTimeout = 65000;
server.headersTimeout = 66000;
server.requestTimeout = 0; // "hang" behaviours must be able to outlast any default
server.maxRequestsPerSocket = 0;

let connSeq = 0;
server.on('connection', (sock) => {
  sock._mock = { id: ++connSeq, gen: connGen, counted: false, prefixes: new Set() };
  S.stats.connections_accepted++;
});

server.on('request', (req, res) => {
  // Benchmark fast path: no URL parsing, no body wait, no log entry.
  if (req.method === 'GET' && S.rules.length === 0 && (req.url === '/bench/echo' || req.url.startsWith('/bench/echo?'))) {
    countRequest(req, '/bench/echo');
    req.resume();
    return benchEcho(req, res);
  }
  handle(req, res).catch((e) => {
    process.stderr.write(`providers.js: internal error on ${req.method} ${req.url}: ${e && e.stack}\n`);
    send(res, 500, { error: 'mock_internal_error', message: String(e && e.message) });
  });
});

// Route prefixes -> provider name (for stats).
function prefixOf(path) {
  const m = /^\/([a-z_]+)(\/|$)/.exec(path);
  return m ? m[1] : '';
}

// Count a provider or bench request (and its connection) in the stats.
function countRequest(req, path) {
  const sock = req.socket;
  const prefix = prefixOf(path);
  if (sock && sock._mock && sock._mock.gen === connGen) {
    if (!sock._mock.counted) { sock._mock.counted = true; S.stats.connections++; }
    if (!sock._mock.prefixes.has(prefix)) {
      sock._mock.prefixes.add(prefix);
      S.stats.connections_by_prefix[prefix] = (S.stats.connections_by_prefix[prefix] || 0) + 1;
    }
  } else if (sock && sock._mock) {
    // A connection opened before the last reset counts as a new one now.
    sock._mock.gen = connGen; sock._mock.counted = true; sock._mock.prefixes = new Set([prefix]);
    S.stats.connections++;
    S.stats.connections_by_prefix[prefix] = (S.stats.connections_by_prefix[prefix] || 0) + 1;
  }
  S.stats.requests_total++;
  const key = `${req.method} ${path}`;
  S.stats.requests[key] = (S.stats.requests[key] || 0) + 1;
  S.stats.requests_by_prefix[prefix] = (S.stats.requests_by_prefix[prefix] || 0) + 1;
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > ARGS.maxBody) { tooBig = true; return; }
      chunks.push(c);
    });
    req.on('end', () => resolve({ buf: Buffer.concat(chunks), tooBig, size }));
    req.on('error', () => resolve({ buf: Buffer.concat(chunks), tooBig, size, aborted: true }));
  });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://mock.invalid');
  const path = url.pathname;
  const { buf, tooBig, size } = await readBody(req);
  const bodyText = buf.toString('utf8');

  // Control API: neither logged nor counted.
  if (path.startsWith('/__mock/') || path === '/__mock') return control(req, res, url, bodyText);

  countRequest(req, path);

  // Benchmark pass-through when rules exist or not a GET: rules apply, not logged.
  if (path === '/bench/echo') {
    const r = takeRule(req.method, path);
    if (r && await applyRule(r, req, res, { url, path, query: url.searchParams, bodyText, consent: {} })) return;
    return benchEcho(req, res);
  }

  // Log the request exactly as received.
  const sock = req.socket;
  const entry = {
    id: S.nextReqId++, time: isoNow(), method: req.method, path, query: paramsToObject(url.searchParams),
    raw_query: url.search.replace(/^\?/, ''), headers: { ...req.headers }, body: tooBig ? null : bodyText,
    body_size: size, connection: sock && sock._mock ? sock._mock.id : null,
  };
  if (!tooBig && bodyText) {
    if (contentTypeIs(req, 'application/json')) { const j = parseJSON(bodyText); if (j.ok) entry.json = j.value; }
    else if (contentTypeIs(req, 'application/x-www-form-urlencoded')) entry.form = paramsToObject(new URLSearchParams(bodyText));
  }
  S.requests.push(entry);
  if (S.requests.length > ARGS.maxLog) S.requests.splice(0, S.requests.length - ARGS.maxLog);
  if (ARGS.verbose) process.stderr.write(`${entry.time} #${entry.id} c${entry.connection} ${req.method} ${req.url}\n`);

  if (tooBig) return send(res, 413, { error: 'mock_body_too_large', message: `request body over ${ARGS.maxBody} bytes` }, { Connection: 'close' });

  // Behaviour rules (failure injection).
  const ctx = { url, path, query: url.searchParams, bodyText, entry, consent: {} };
  const rule = takeRule(req.method, path);
  if (rule) {
    const done = await applyRule(rule, req, res, ctx);
    if (done) return;
  }
  return route(req, res, ctx);
}

function benchEcho(req, res) {
  const body = '{"ok":true,"service":"bench","echo":"pong"}';
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
  res.end(body);
}

function route(req, res, ctx) {
  const p = ctx.path;
  if (p.startsWith('/slack/')) return slack(req, res, ctx);
  if (p.startsWith('/notion/')) return notion(req, res, ctx);
  if (p.startsWith('/github/')) return github(req, res, ctx);
  if (p.startsWith('/openweather/')) return openweather(req, res, ctx);
  if (p.startsWith('/echo/')) return echo(req, res, ctx);
  return send(res, 404, { error: 'mock_no_route', message: `no mock route for ${req.method} ${p}` });
}

// ---- Echo: a provider that quotes the request back (t/081) -----------------
//
//   /echo/.../error      401-less 400 whose body quotes the Authorization
//                        header and the query, JSON-escaped and \u-escaped
//   /echo/.../page       200 with pagination links carrying the query
//                        (appid=KEY) and the token URL-encoded
//   /echo/.../text       200 text/plain quoting the request line
//   anything else        200 {"path","query"} (what arrived)

function echo(req, res, ctx) {
  const auth = req.headers.authorization || '';
  const q = ctx.url.search;
  const tok = auth.replace(/^Bearer /, '') || ctx.query.get('appid') || '';
  const uEsc = tok.split('').map((c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')).join('');
  if (ctx.path.endsWith('/error')) {
    const body = `{"message":"bad request","request":{"authorization":${JSON.stringify(auth)},`
      + `"query":${JSON.stringify(q)}},"escaped":"${uEsc}","url_encoded":${JSON.stringify(encodeURIComponent(tok))}}`;
    res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    return res.end(body);
  }
  if (ctx.path.endsWith('/page')) {
    return send(res, 200, { items: [1, 2], links: { next: `https://api.example.com/items?page=2&${q.replace(/^\?/, '')}`,
      self: `https://api.example.com/items?token=${encodeURIComponent(tok)}` }, [`key:${tok}`]: true });
  }
  if (ctx.path.endsWith('/text')) {
    const body = `You sent ${req.method} ${req.url} with ${auth}`;
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    return res.end(body);
  }
  return send(res, 200, { path: ctx.path, query: paramsToObject(ctx.query) });
}

// ---- Behaviour rules -------------------------------------------------------
//
// A rule applies to the next `count` requests whose path starts with
// `prefix` (and whose method is `method`, when given). count -1 = forever.
// Terminal actions (first match wins, in this order):
//   reset: true             close the TCP connection at once (RST), no answer
//   garbage: true|"text"    write bytes that are not HTTP, then close
//   hang_ms: T / hang: true read the request, answer nothing; close after T ms
//                           (hang: true alone: never close; the client gives up)
//   oversized_bytes: N      answer `status` (default 200) with a JSON body of N bytes
//   status (+ body, headers) answer exactly that
// Modifiers (the normal handler still answers):
//   delay_ms: T             wait T ms first (also combines with status/oversized)
//   deny: true | "code"     authorize endpoints redirect with error=access_denied (or code)
//   as_user: "id"           authorize endpoints: the consenting user
//   grant_scopes: [..]      authorize endpoints: the user grants only these scopes

function takeRule(method, path) {
  for (const r of S.rules) {
    if (r.remaining === 0) continue;
    if (r.method && r.method.toUpperCase() !== method) continue;
    if (!path.startsWith(r.prefix)) continue;
    if (r.remaining > 0) r.remaining--;
    r.hits++;
    return r;
  }
  return null;
}

async function applyRule(r, req, res, ctx) {
  const sock = req.socket;
  if (r.delay_ms) await sleep(r.delay_ms);
  if (r.reset) {
    if (typeof sock.resetAndDestroy === 'function') sock.resetAndDestroy();
    else sock.destroy();
    return true;
  }
  if (r.garbage) {
    const text = typeof r.garbage === 'string' ? r.garbage : '\x00\xffTHIS IS NOT HTTP \x01\x02\x03 }{ garbage garbage\r\n\r\n';
    sock.write(Buffer.from(text, 'latin1'), () => sock.destroy());
    return true;
  }
  if (r.hang_ms || r.hang) {
    if (r.hang_ms) {
      const t = setTimeout(() => sock.destroy(), r.hang_ms);
      sock.once('close', () => clearTimeout(t));
    }
    return true; // nothing is ever written
  }
  if (r.oversized_bytes) {
    await sendOversized(res, r.status || 200, r.oversized_bytes, r.headers || {}, !!r.chunked);
    return true;
  }
  if (r.status) {
    send(res, r.status, r.body === undefined ? '' : r.body, r.headers || {});
    return true;
  }
  if (r.deny) ctx.consent.deny = r.deny === true ? 'access_denied' : String(r.deny);
  if (r.as_user) ctx.consent.user = String(r.as_user);
  if (r.grant_scopes) ctx.consent.scopes = [].concat(r.grant_scopes);
  return false;
}

function sendOversized(res, status, bytes, headers, chunked) {
  return new Promise((resolve) => {
    const head = '{"ok":true,"padding":"';
    const tail = '"}';
    const padLen = Math.max(0, bytes - head.length - tail.length);
    const h = { 'Content-Type': 'application/json; charset=utf-8', ...headers };
    if (!chunked) h['Content-Length'] = head.length + padLen + tail.length;
    res.writeHead(status, h);
    res.write(head);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let left = padLen;
    const pump = () => {
      while (left > 0) {
        if (res.destroyed) return resolve();
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) { res.once('drain', pump); return; }
      }
      res.end(tail, resolve);
    };
    res.on('close', resolve);
    pump();
  });
}

// ---------------------------------------------------------------------------
// Control API (/__mock/...)
// ---------------------------------------------------------------------------

function control(req, res, url, bodyText) {
  const p = url.pathname.replace(/\/+$/, '');
  let body = {};
  if (bodyText && bodyText.trim()) {
    const j = parseJSON(bodyText);
    if (!j.ok) return send(res, 400, { error: 'bad_json', message: j.error });
    body = j.value;
  }
  const m = req.method;

  if (p === '/__mock/health' && m === 'GET') return send(res, 200, { ok: true, port: server.address().port });

  if (p === '/__mock/requests' && m === 'GET') {
    // Filters: ?prefix=/slack/api  ?method=POST  ?since=<id> (exclusive)
    let list = S.requests;
    const pre = url.searchParams.get('prefix');
    const meth = url.searchParams.get('method');
    const since = parseInt(url.searchParams.get('since') || '0', 10);
    if (pre) list = list.filter((r) => r.path.startsWith(pre));
    if (meth) list = list.filter((r) => r.method === meth.toUpperCase());
    if (since) list = list.filter((r) => r.id > since);
    return send(res, 200, { requests: list });
  }

  if (p === '/__mock/reset' && m === 'POST') {
    // Default: forget the request log, the stats and the behaviour rules.
    // {"all": true}: also tokens, codes, clients, config and fixture data.
    if (body.all) { resetAll(); connGen++; } else resetLog();
    return send(res, 200, { ok: true, all: !!body.all });
  }

  if (p === '/__mock/stats' && m === 'GET') return send(res, 200, S.stats);

  if (p === '/__mock/behaviour' || p === '/__mock/behavior') {
    if (m === 'GET') return send(res, 200, { rules: S.rules });
    if (m === 'DELETE') { S.rules = []; return send(res, 200, { ok: true }); }
    if (m === 'POST') {
      const items = Array.isArray(body) ? body : Array.isArray(body.rules) ? body.rules : [body];
      const out = { ok: true, rules: [], tokens: [] };
      for (const it of items) {
        // Token actions take effect at once.
        for (const [field, fn] of [['expire_token', expireToken], ['revoke_token', revokeToken]]) {
          if (it[field]) {
            const r = fn(it[field]);
            if (!r) return send(res, 404, { error: 'unknown_token', message: `${field}: no such token` });
            out.tokens.push(publicToken(r));
          }
        }
        const isRule = ['status', 'reset', 'garbage', 'hang', 'hang_ms', 'oversized_bytes', 'delay_ms', 'deny', 'as_user', 'grant_scopes'].some((k) => it[k] !== undefined);
        if (!isRule) continue;
        if (!it.prefix || typeof it.prefix !== 'string' || !it.prefix.startsWith('/')) {
          return send(res, 400, { error: 'bad_rule', message: 'a rule needs "prefix", a path starting with /' });
        }
        const count = it.count === undefined ? 1 : parseInt(it.count, 10);
        const rule = { id: S.nextRuleId++, ...it, remaining: count < 0 ? -1 : count, hits: 0 };
        S.rules.push(rule);
        out.rules.push(rule);
      }
      return send(res, 200, out);
    }
  }

  if (p === '/__mock/tokens') {
    if (m === 'GET') {
      let list = [...S.tokens.values()];
      const prov = url.searchParams.get('provider');
      const tok = url.searchParams.get('token');
      if (prov) list = list.filter((t) => t.provider === prov);
      if (tok) list = list.filter((t) => t.token === tok);
      return send(res, 200, { tokens: list.map(publicToken) });
    }
    if (m === 'POST') return mintToken(res, body);
  }
  if (p === '/__mock/tokens/expire' && m === 'POST') {
    const r = expireToken(body.token);
    return r ? send(res, 200, publicToken(r)) : send(res, 404, { error: 'unknown_token' });
  }
  if (p === '/__mock/tokens/revoke' && m === 'POST') {
    const r = revokeToken(body.token);
    return r ? send(res, 200, publicToken(r)) : send(res, 404, { error: 'unknown_token' });
  }

  if (p === '/__mock/codes' && m === 'GET') return send(res, 200, { codes: [...S.codes.values()] });

  if (p === '/__mock/clients') {
    if (m === 'GET') return send(res, 200, { clients: [...S.clients.keys()] });
    if (m === 'POST') {
      const items = Array.isArray(body) ? body : [body];
      for (const c of items) {
        if (!['slack', 'notion', 'github'].includes(c.provider) || !c.client_id || typeof c.client_secret !== 'string') {
          return send(res, 400, { error: 'bad_client', message: 'need provider (slack|notion|github), client_id, client_secret' });
        }
        S.clients.set(`${c.provider}:${c.client_id}`, c.client_secret);
      }
      return send(res, 200, { ok: true });
    }
  }

  if (p === '/__mock/config') {
    if (m === 'GET') return send(res, 200, S.config);
    if (m === 'POST') { deepMerge(S.config, body); return send(res, 200, S.config); }
  }

  return send(res, 404, { error: 'unknown_control', message: `no control endpoint ${m} ${p}` });
}

function expireToken(token) {
  const r = S.tokens.get(token);
  if (r) r.expires_at = now() - 1000;
  return r;
}
function revokeToken(token) {
  const r = S.tokens.get(token);
  if (r) r.revoked = true;
  return r;
}

// POST /__mock/tokens {provider, user?, scopes?, expires_in?, refresh?,
//   token_type?, token?, refresh_token?, client_id?, refresh_expires_in?}
function mintToken(res, b) {
  const prov = b.provider;
  if (!['slack', 'notion', 'github', 'openweather'].includes(prov)) {
    return send(res, 400, { error: 'bad_provider', message: 'provider must be slack, notion, github or openweather' });
  }
  if (b.token && S.tokens.has(b.token)) return send(res, 409, { error: 'token_exists' });
  if (prov === 'openweather') {
    const rec = remember({ token: b.token || randHex(32), provider: prov, kind: 'api_key', user: b.user || null, scopes: [] });
    return send(res, 201, { provider: prov, api_key: rec.token, access_token: rec.token });
  }
  const scopes = b.scopes ? [].concat(b.scopes) : DEFAULT_SCOPES[prov];
  const user = b.user || DEFAULT_USER[prov];
  const tokenType = b.token_type || (prov === 'slack' ? 'user' : 'bearer');
  const ttl = b.expires_in === undefined ? null : Number(b.expires_in);
  const wantRefresh = b.refresh === undefined ? !!b.refresh_token : !!b.refresh;
  const access = remember({
    token: b.token || makeAccessToken(prov, tokenType, wantRefresh || ttl !== null), provider: prov, kind: 'access', user,
    team: prov === 'slack' ? S.data.slack.team.id : null, client_id: b.client_id || null, scopes, token_type: tokenType,
    expires_at: ttl === null ? null : now() + ttl * 1000,
  });
  const out = { provider: prov, access_token: access.token, token_type: tokenType, scopes, user };
  if (ttl !== null) out.expires_in = ttl;
  if (wantRefresh) {
    const rttl = b.refresh_expires_in === undefined ? null : Number(b.refresh_expires_in);
    const refresh = remember({
      token: b.refresh_token || makeRefreshToken(prov), provider: prov, kind: 'refresh', user, team: access.team,
      client_id: access.client_id, scopes, token_type: tokenType, pair: access.token, expires_at: rttl === null ? null : now() + rttl * 1000,
    });
    access.pair = refresh.token;
    out.refresh_token = refresh.token;
  }
  return send(res, 201, out);
}

const DEFAULT_SCOPES = {
  slack: ['channels:read', 'groups:read', 'chat:write', 'search:read'],
  notion: [],
  github: ['repo', 'read:user'],
};
const DEFAULT_USER = { slack: 'U0MOCKUSER1', notion: '6a0f7c3e-5b7d-4e2b-9c1d-2f3e4a5b6c7d', github: 'mock-user' };

function makeAccessToken(prov, tokenType, expiring) {
  if (prov === 'slack') {
    // Rotating Slack tokens carry the xoxe. prefix; classic ones do not.
    const kind = tokenType === 'bot' ? 'xoxb' : 'xoxp';
    return expiring ? `xoxe.${kind}-1-${randAlnum(80)}` : `${kind}-${randDigits(12)}-${randDigits(12)}-${randDigits(13)}-${randHex(32)}`;
  }
  if (prov === 'notion') return `ntn_${randAlnum(46)}`;
  if (prov === 'github') return expiring ? `ghu_${randAlnum(36)}` : `gho_${randAlnum(36)}`;
  return randHex(32);
}
function makeRefreshToken(prov) {
  if (prov === 'slack') return `xoxe-1-${randAlnum(120)}`;
  if (prov === 'notion') return `nrt_${randAlnum(46)}`;
  if (prov === 'github') return `ghr_${randAlnum(76)}`;
  return randHex(40);
}

// ===========================================================================
// SLACK
// ===========================================================================
//
// Real behaviour reproduced:
// - Every Web API answer is HTTP 200 with {"ok": true|false}; failures carry
//   "error" (invalid_auth, not_authed, token_revoked, token_expired,
//   missing_scope + needed/provided, not_allowed_token_type, ...).
// - Only rate limiting uses a real status: 429 + Retry-After (inject it with
//   a behaviour rule).
// - Answers carry x-slack-req-id, x-oauth-scopes and x-accepted-oauth-scopes.
// - search.messages takes a user token only: a bot token gets
//   not_allowed_token_type.
// - JSON posted without "; charset=utf-8" works but adds the missing_charset
//   warning.

function slackHeaders(rec, accepted) {
  const h = { 'x-slack-req-id': randHex(32), 'Access-Control-Allow-Origin': '*' };
  if (rec) h['x-oauth-scopes'] = rec.scopes.join(',');
  if (accepted) h['x-accepted-oauth-scopes'] = accepted;
  return h;
}
function slackOk(res, body, rec, accepted, warnings) {
  const out = { ok: true, ...body };
  if (warnings && warnings.length) {
    out.warning = warnings.join(',');
    out.response_metadata = { ...(out.response_metadata || {}), warnings };
  }
  return send(res, 200, out, slackHeaders(rec, accepted));
}
function slackErr(res, error, extra = {}, rec = null, accepted = null, status = 200) {
  return send(res, status, { ok: false, error, ...extra }, slackHeaders(rec, accepted));
}

// Slack takes arguments from the query string and from a form or JSON body.
function slackArgs(req, ctx) {
  const args = paramsToObject(ctx.query);
  const warnings = [];
  if (ctx.bodyText) {
    if (contentTypeIs(req, 'application/json')) {
      const j = parseJSON(ctx.bodyText);
      if (!j.ok || !j.value || typeof j.value !== 'object') return { error: 'invalid_json' };
      Object.assign(args, j.value);
      if (!/charset\s*=\s*utf-?8/i.test(req.headers['content-type'] || '')) warnings.push('missing_charset');
    } else if (contentTypeIs(req, 'application/x-www-form-urlencoded') || !req.headers['content-type']) {
      Object.assign(args, paramsToObject(new URLSearchParams(ctx.bodyText)));
    } else {
      return { error: 'invalid_form_data' };
    }
  }
  for (const k of Object.keys(args)) args[k] = firstOf(args[k]);
  return { args, warnings };
}

function slackAuth(req, args) {
  // Bearer header, or (legacy, POST body only) a token argument.
  const tok = bearerToken(req) || (req.method === 'POST' && typeof args.token === 'string' ? args.token : null);
  return checkAccess('slack', tok);
}

function slack(req, res, ctx) {
  const p = ctx.path;
  if (p === '/slack/oauth/v2/authorize') return slackAuthorize(req, res, ctx);
  const m = /^\/slack\/api\/([A-Za-z0-9_.]+)$/.exec(p);
  if (!m) return send(res, 404, 'Not Found');
  const method = m[1];
  const parsed = slackArgs(req, ctx);
  if (parsed.error) return slackErr(res, parsed.error);
  const { args, warnings } = parsed;

  if (method === 'oauth.v2.access') return slackAccess(req, res, args);

  const handlers = {
    'auth.test': [null, slackAuthTest],
    'auth.revoke': [null, slackRevoke],
    'conversations.list': ['channels:read,groups:read,im:read,mpim:read', slackConversationsList],
    'chat.postMessage': ['chat:write', slackPostMessage],
    'search.messages': ['search:read', slackSearchMessages],
  };
  const h = handlers[method];
  // Unknown methods answer 404 with ok:false, unknown_method.
  if (!h) return slackErr(res, 'unknown_method', { req_method: method }, null, null, 404);

  const auth = slackAuth(req, args);
  if (auth.status === 'missing') return slackErr(res, 'not_authed');
  if (auth.status === 'invalid') return slackErr(res, 'invalid_auth');
  if (auth.status === 'revoked') return slackErr(res, 'token_revoked');
  if (auth.status === 'expired') return slackErr(res, 'token_expired');
  return h[1](req, res, args, auth.rec, h[0], warnings);
}

function slackNeedScope(res, rec, scope, accepted) {
  if (rec.scopes.includes(scope)) return false;
  slackErr(res, 'missing_scope', { needed: scope, provided: rec.scopes.join(',') }, rec, accepted);
  return true;
}

// GET https://slack.com/oauth/v2/authorize?client_id&scope&user_scope&redirect_uri&state
// The mock user consents at once: 302 redirect_uri?code=..&state=..
function slackAuthorize(req, res, ctx) {
  const q = paramsToObject(ctx.query);
  const clientId = firstOf(q.client_id);
  const redirectUri = firstOf(q.redirect_uri);
  const state = firstOf(q.state);
  // Real Slack shows an error page (no redirect) for a bad client or scope set.
  if (!clientId) return sendHTML(res, 400, 'Slack: invalid_client_id', 'The client_id parameter is missing.');
  if (!redirectUri) return sendHTML(res, 400, 'Slack: bad_redirect_uri', 'The mock has no app configuration: send redirect_uri.');
  const botScopes = (firstOf(q.scope) || '').split(/[ ,]+/).filter(Boolean);
  const userScopes = (firstOf(q.user_scope) || '').split(/[ ,]+/).filter(Boolean);
  if (!botScopes.length && !userScopes.length) return sendHTML(res, 400, 'Slack: invalid_scope', 'Neither scope nor user_scope was requested.');
  if (ctx.consent.deny || firstOf(q.mock_deny) === '1') {
    // The user pressed "Cancel": Slack redirects with error=access_denied.
    return redirectWith(res, redirectUri, { error: ctx.consent.deny || 'access_denied', state });
  }
  const granted = ctx.consent.scopes;
  const code = newCode('slack', {
    client_id: clientId, redirect_uri: redirectUri, state,
    scopes: granted ? userScopes.filter((s) => granted.includes(s)) : userScopes,
    bot_scopes: granted ? botScopes.filter((s) => granted.includes(s)) : botScopes,
    code_challenge: firstOf(q.code_challenge) || null, code_challenge_method: firstOf(q.code_challenge_method) || null,
    user: ctx.consent.user || DEFAULT_USER.slack, authorize_query: q,
  });
  return redirectWith(res, redirectUri, { code: code.code, state });
}

// POST https://slack.com/api/oauth.v2.access  (form; client id/secret in the
// body or HTTP Basic). Errors: 200 {"ok":false,"error":"invalid_code"} etc.
function slackAccess(req, res, args) {
  const basic = basicAuth(req);
  const clientId = basic ? basic.user : args.client_id;
  const secret = basic ? basic.pass : args.client_secret;
  const grant = args.grant_type || 'authorization_code';
  countGrant('slack', grant);
  const cc = checkClient('slack', clientId, secret);
  if (cc === 'missing_client' || cc === 'unknown_client') return slackErr(res, 'invalid_client_id');
  if (cc === 'bad_secret') return slackErr(res, 'bad_client_secret');
  const cfg = S.config.slack;
  const team = S.data.slack.team;
  const ttl = cfg.access_ttl;

  if (grant === 'refresh_token') {
    // Token rotation: the refresh answer is FLAT (top-level access_token,
    // refresh_token, expires_in, token_type "user" or "bot"), unlike the
    // code exchange where the user token sits under authed_user.
    const old = args.refresh_token ? S.tokens.get(args.refresh_token) : null;
    if (!old || old.provider !== 'slack' || old.kind !== 'refresh' || tokenStatus(old) !== 'active' ||
        (old.client_id && old.client_id !== clientId)) {
      return slackErr(res, 'invalid_refresh_token');
    }
    // The used refresh token is revoked; the old access token keeps working
    // until it expires.
    const acc = remember({
      token: makeAccessToken('slack', old.token_type, true), provider: 'slack', kind: 'access', user: old.user, team: old.team,
      client_id: clientId, scopes: old.scopes, token_type: old.token_type, expires_at: now() + ttl * 1000,
    });
    const ref = remember({
      token: makeRefreshToken('slack'), provider: 'slack', kind: 'refresh', user: old.user, team: old.team, client_id: clientId,
      scopes: old.scopes, token_type: old.token_type, pair: acc.token,
    });
    acc.pair = ref.token;
    old.used = true; old.rotated_to = ref.token;
    countGrant('slack', grant, true);
    const out = {
      app_id: 'A0MOCKAPP01', access_token: acc.token, expires_in: ttl, refresh_token: ref.token, token_type: old.token_type,
      scope: old.scopes.join(','), team: { id: team.id, name: team.name }, enterprise: null, is_enterprise_install: false,
    };
    if (old.token_type === 'bot') out.bot_user_id = 'U0MOCKBOT01';
    else out.user_id = old.user;
    return slackOk(res, out);
  }
  if (grant !== 'authorization_code') return slackErr(res, 'invalid_grant_type');

  const t = takeCode('slack', args.code, clientId);
  if (t.error) return slackErr(res, 'invalid_code');
  const code = t.rec;
  // "redirect_uri ... must match the originally submitted URI (if one was sent)".
  if (code.redirect_uri && args.redirect_uri !== code.redirect_uri) return slackErr(res, 'bad_redirect_uri');
  // Slack accepts code_verifier (PKCE); the error name is the mock's choice.
  if (!checkPkce(code, args.code_verifier)) return slackErr(res, 'invalid_code_verifier');
  code.used = true;

  const rotating = !!cfg.token_rotation;
  const out = { app_id: 'A0MOCKAPP01' };
  const userTok = remember({
    token: makeAccessToken('slack', 'user', rotating), provider: 'slack', kind: 'access', user: code.user, team: team.id,
    client_id: clientId, scopes: code.scopes, token_type: 'user', expires_at: rotating ? now() + ttl * 1000 : null,
  });
  out.authed_user = { id: code.user, scope: code.scopes.join(','), access_token: userTok.token, token_type: 'user' };
  if (rotating) {
    const r = remember({ token: makeRefreshToken('slack'), provider: 'slack', kind: 'refresh', user: code.user, team: team.id, client_id: clientId, scopes: code.scopes, token_type: 'user', pair: userTok.token });
    userTok.pair = r.token;
    out.authed_user.refresh_token = r.token;
    out.authed_user.expires_in = ttl;
  }
  // A bot token (top-level access_token) comes when bot scopes were asked
  // for. The mock also sends one by default for user-scope-only installs
  // (config slack.always_bot_token) so a gateway that reads the top-level
  // token instead of authed_user.access_token is caught: the bot token gets
  // not_allowed_token_type from search.messages.
  if (code.bot_scopes.length || cfg.always_bot_token) {
    const botScopes = code.bot_scopes.length ? code.bot_scopes : ['channels:read', 'chat:write'];
    const bot = remember({
      token: makeAccessToken('slack', 'bot', rotating), provider: 'slack', kind: 'access', user: 'U0MOCKBOT01', team: team.id,
      client_id: clientId, scopes: botScopes, token_type: 'bot', expires_at: rotating ? now() + ttl * 1000 : null,
    });
    Object.assign(out, { scope: botScopes.join(','), token_type: 'bot', access_token: bot.token, bot_user_id: 'U0MOCKBOT01' });
    if (rotating) {
      const r = remember({ token: makeRefreshToken('slack'), provider: 'slack', kind: 'refresh', user: 'U0MOCKBOT01', team: team.id, client_id: clientId, scopes: botScopes, token_type: 'bot', pair: bot.token });
      bot.pair = r.token;
      out.refresh_token = r.token;
      out.expires_in = ttl;
    }
  }
  Object.assign(out, { team: { id: team.id, name: team.name }, enterprise: null, is_enterprise_install: false });
  countGrant('slack', grant, true);
  return slackOk(res, out);
}

function slackAuthTest(req, res, args, rec) {
  const team = S.data.slack.team;
  return slackOk(res, {
    url: `https://${team.domain}.slack.com/`, team: team.name, user: S.data.slack.users[rec.user] || 'mock-bot',
    team_id: team.id, user_id: rec.user, is_enterprise_install: false,
  }, rec);
}

// auth.revoke: revokes the calling token. test=1 only checks it.
function slackRevoke(req, res, args, rec) {
  if (args.test === '1' || args.test === 'true' || args.test === true) return slackOk(res, { revoked: false }, rec);
  revokeWithPair(rec);
  return slackOk(res, { revoked: true }, rec);
}

// conversations.list: types, limit (Slack caps at 1000), cursor, exclude_archived.
function slackConversationsList(req, res, args, rec, accepted) {
  const TYPE_SCOPE = { public_channel: 'channels:read', private_channel: 'groups:read', mpim: 'mpim:read', im: 'im:read' };
  const types = String(args.types || 'public_channel').split(',').map((s) => s.trim()).filter(Boolean);
  for (const t of types) if (!TYPE_SCOPE[t]) return slackErr(res, 'invalid_types', {}, rec, accepted);
  for (const t of types) if (slackNeedScope(res, rec, TYPE_SCOPE[t], accepted)) return;
  let limit = args.limit === undefined ? 100 : parseInt(args.limit, 10);
  if (!Number.isFinite(limit) || limit < 1) limit = 100;
  limit = Math.min(limit, 1000);
  const excl = args.exclude_archived === true || args.exclude_archived === 'true' || args.exclude_archived === '1';
  let list = S.data.slack.channels.filter((c) => types.includes(c._type));
  // Private conversations are listed only when the user is in them.
  list = list.filter((c) => c._type === 'public_channel' || c._type === 'im' || c.is_member);
  if (excl) list = list.filter((c) => !c.is_archived);
  let start = 0;
  if (args.cursor) {
    // Cursors are opaque base64 strings ("dGVhbTpD..." = "team:C...").
    const dec = Buffer.from(String(args.cursor), 'base64').toString('utf8');
    const id = dec.startsWith('team:') ? dec.slice(5) : null;
    start = id ? list.findIndex((c) => c.id === id) : -1;
    if (start < 0) return slackErr(res, 'invalid_cursor', {}, rec, accepted);
  }
  const page = list.slice(start, start + limit);
  const nextItem = list[start + limit];
  const next = nextItem ? Buffer.from(`team:${nextItem.id}`).toString('base64') : '';
  return slackOk(res, { channels: clean(page), response_metadata: { next_cursor: next } }, rec, accepted);
}

function slackFindChannel(ref) {
  const s = String(ref || '').replace(/^#/, '');
  return S.data.slack.channels.find((c) => c.id === s || c.name === s);
}

function slackNextTs() {
  const d = S.data.slack;
  d.lastTs = Math.max(d.lastTs + 1, nowSec());
  return `${d.lastTs}.${randDigits(6)}`;
}

// chat.postMessage: channel, text, thread_ts (JSON or form body).
function slackPostMessage(req, res, args, rec, accepted, warnings) {
  if (slackNeedScope(res, rec, 'chat:write', accepted)) return;
  if (!args.channel) return slackErr(res, 'channel_not_found', {}, rec, accepted);
  const ch = slackFindChannel(args.channel);
  if (!ch) return slackErr(res, 'channel_not_found', {}, rec, accepted);
  if (ch.is_archived) return slackErr(res, 'is_archived', {}, rec, accepted);
  if (ch._type !== 'im' && !ch.is_member) return slackErr(res, 'not_in_channel', {}, rec, accepted);
  const text = args.text === undefined || args.text === null ? '' : String(args.text);
  if (!text && !args.blocks && !args.attachments) return slackErr(res, 'no_text', {}, rec, accepted);
  if (text.length > 40000) return slackErr(res, 'msg_too_long', {}, rec, accepted);
  let threadTs = null;
  if (args.thread_ts !== undefined && args.thread_ts !== null && args.thread_ts !== '') {
    threadTs = String(args.thread_ts);
    if (!/^\d+\.\d+$/.test(threadTs)) return slackErr(res, 'invalid_thread_ts', {}, rec, accepted);
    if (!S.data.slack.messages.some((mm) => mm.channel === ch.id && mm.ts === threadTs)) return slackErr(res, 'thread_not_found', {}, rec, accepted);
  }
  const ts = slackNextTs();
  const msg = { channel: ch.id, user: rec.user, ts, text };
  if (threadTs) msg.thread_ts = threadTs;
  S.data.slack.messages.push(msg);
  const message = {
    user: rec.user, type: 'message', ts, text, team: S.data.slack.team.id, app_id: 'A0MOCKAPP01',
    blocks: [{ type: 'rich_text', block_id: randAlnum(5), elements: [{ type: 'rich_text_section', elements: [{ type: 'text', text }] }] }],
  };
  if (rec.token_type === 'bot') { message.bot_id = 'B0MOCKBOT01'; message.subtype = 'bot_message'; }
  if (threadTs) { message.thread_ts = threadTs; message.parent_user_id = 'U0ALICE0001'; }
  return slackOk(res, { channel: ch.id, ts, message }, rec, accepted, warnings);
}

// search.messages: query, count (max 100), page (max 100), sort score|timestamp.
function slackSearchMessages(req, res, args, rec, accepted) {
  // Real Slack: search.* refuses bot tokens.
  if (rec.token_type !== 'user') return slackErr(res, 'not_allowed_token_type', {}, rec, accepted);
  if (slackNeedScope(res, rec, 'search:read', accepted)) return;
  const query = args.query === undefined ? '' : String(args.query).trim();
  if (!query) return slackErr(res, 'no_query', {}, rec, accepted);
  let count = parseInt(args.count === undefined ? 20 : args.count, 10);
  if (!Number.isFinite(count) || count < 1) count = 20;
  count = Math.min(count, 100);
  let page = parseInt(args.page === undefined ? 1 : args.page, 10);
  if (!Number.isFinite(page) || page < 1) page = 1;
  if (page > 100) return slackErr(res, 'invalid_arguments', {}, rec, accepted);
  const sort = args.sort === 'timestamp' ? 'timestamp' : 'score';
  const dir = args.sort_dir === 'asc' ? 'asc' : 'desc';

  // Minimal modifier support: in:#channel, from:@user; other words must all appear.
  const words = [];
  let inCh = null;
  let from = null;
  for (const w of query.split(/\s+/)) {
    if (/^in:/i.test(w)) inCh = w.slice(3).replace(/^#/, '');
    else if (/^from:/i.test(w)) from = w.slice(5).replace(/^@/, '').replace(/^<@([A-Z0-9]+)>$/, '$1');
    else words.push(w.toLowerCase());
  }
  const d = S.data.slack;
  let hits = d.messages.filter((mm) => {
    const ch = d.channels.find((c) => c.id === mm.channel);
    if (!ch || (ch._type !== 'im' && !ch.is_member)) return false; // search shows what the user can see
    if (inCh && ch.name !== inCh && ch.id !== inCh) return false;
    if (from && mm.user !== from && d.users[mm.user] !== from) return false;
    const t = mm.text.toLowerCase();
    return words.every((w) => t.includes(w));
  }).map((mm) => ({ mm, score: words.reduce((s, w) => s + mm.text.toLowerCase().split(w).length - 1, 0) }));
  if (sort === 'timestamp') hits.sort((a, b) => (parseFloat(a.mm.ts) - parseFloat(b.mm.ts)) * (dir === 'asc' ? 1 : -1));
  else hits.sort((a, b) => b.score - a.score || parseFloat(b.mm.ts) - parseFloat(a.mm.ts));
  const total = hits.length;
  const pages = Math.max(1, Math.ceil(total / count));
  const slice = hits.slice((page - 1) * count, page * count);
  const team = d.team;
  const matches = slice.map(({ mm, score }) => {
    const ch = d.channels.find((c) => c.id === mm.channel);
    return {
      iid: uuid(), team: team.id, score,
      channel: { id: ch.id, is_channel: !!ch.is_channel, is_group: !!ch.is_group, is_im: !!ch.is_im, is_mpim: !!ch.is_mpim, is_shared: false, is_org_shared: false, is_ext_shared: false, is_private: !!ch.is_private, name: ch.name || ch.user, pending_shared: [], is_pending_ext_shared: false },
      type: 'message', user: mm.user, username: d.users[mm.user] || mm.user, ts: mm.ts, text: mm.text,
      permalink: `https://${team.domain}.slack.com/archives/${ch.id}/p${mm.ts.replace('.', '')}`, no_reactions: true,
    };
  });
  const first = total ? (page - 1) * count + 1 : 0;
  return slackOk(res, {
    query,
    messages: {
      total,
      pagination: { total_count: total, page, per_page: count, page_count: pages, first, last: first ? first + slice.length - 1 : 0 },
      paging: { count, total, page, pages },
      matches,
    },
  }, rec, accepted);
}

// ===========================================================================
// NOTION
// ===========================================================================
//
// Real behaviour reproduced:
// - OAuth: authorize needs response_type=code and owner=user; the token
//   endpoint takes HTTP Basic client auth and a JSON body, answers
//   access_token, token_type, refresh_token, bot_id, workspace_id,
//   workspace_name, workspace_icon, owner, duplicated_template_id (no
//   expires_in); errors are 400 {"error":"invalid_grant",...} (401
//   invalid_client for bad client credentials).
// - A refresh rotates both the access and the refresh token.
// - API: every call needs Notion-Version (400 missing_version), errors are
//   {"object":"error","status":N,"code":..,"message":..,"request_id":..},
//   401 unauthorized for a bad token, 404 object_not_found, 400
//   validation_error; ids work with or without dashes.

const NOTION_VERSIONS = new Set(['2021-05-13', '2021-08-16', '2022-02-22', '2022-06-28', '2025-09-03']);

function notionErr(res, status, code, message, headers = {}) {
  return send(res, status, { object: 'error', status, code, message, request_id: uuid() }, headers);
}
function notionOAuthErr(res, status, error, description) {
  return send(res, status, { error, error_description: description, request_id: uuid() });
}

function notion(req, res, ctx) {
  const p = ctx.path;
  if (p === '/notion/v1/oauth/authorize') return notionAuthorize(req, res, ctx);
  if (p === '/notion/v1/oauth/token') return notionToken(req, res, ctx);
  if (p === '/notion/v1/oauth/revoke') return notionRevoke(req, res, ctx);
  if (!p.startsWith('/notion/v1/')) return notionErr(res, 400, 'invalid_request_url', 'Invalid request URL.');

  // Notion-Version is validated first, on every API call.
  const ver = req.headers['notion-version'];
  if (!ver) return notionErr(res, 400, 'missing_version', 'Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.');
  if (!NOTION_VERSIONS.has(ver)) return notionErr(res, 400, 'validation_error', `Notion-Version header failed validation: Notion-Version header should be a supported version, instead was \`${ver}\`.`);
  const auth = checkAccess('notion', bearerToken(req));
  if (auth.status !== 'ok') return notionErr(res, 401, 'unauthorized', 'API token is invalid.');
  const rec = auth.rec;

  let body = {};
  if (req.method === 'POST' || req.method === 'PATCH') {
    if (ctx.bodyText && ctx.bodyText.trim()) {
      const j = parseJSON(ctx.bodyText);
      if (!j.ok || !j.value || typeof j.value !== 'object' || Array.isArray(j.value)) return notionErr(res, 400, 'invalid_json', 'Error parsing JSON body.');
      body = j.value;
    }
  }
  const sub = p.slice('/notion/v1/'.length);
  if (sub === 'search' && req.method === 'POST') return notionSearch(req, res, body);
  if (sub === 'pages' && req.method === 'POST') return notionCreatePage(req, res, body, rec);
  let m = /^pages\/([^/]+)$/.exec(sub);
  if (m && req.method === 'GET') return notionGetPage(req, res, decodeURIComponent(m[1]));
  m = /^databases\/([^/]+)$/.exec(sub);
  if (m && req.method === 'GET') {
    const id = notionId(decodeURIComponent(m[1]));
    const db = id && S.data.notion.databases.get(id);
    if (!id) return notionErr(res, 400, 'validation_error', `path failed validation: path.database_id should be a valid uuid, instead was \`"${m[1]}"\`.`);
    if (!db) return notionErr(res, 404, 'object_not_found', `Could not find database with ID: ${id}. Make sure the relevant pages and databases are shared with your integration.`);
    return send(res, 200, { ...db, request_id: uuid() });
  }
  if (sub === 'users/me' && req.method === 'GET') {
    return send(res, 200, { object: 'user', id: rec.bot_id || 'b0b0b0b0-0000-4000-8000-000000000001', name: 'Mock Integration', avatar_url: null, type: 'bot', bot: { owner: { type: 'user', user: { object: 'user', id: rec.user } }, workspace_name: S.data.notion.workspace.name }, request_id: uuid() });
  }
  return notionErr(res, 400, 'invalid_request_url', 'Invalid request URL.');
}

// Notion ids: 32 hex digits, dashes optional. Returns the dashed form or null.
function notionId(s) {
  const hex = String(s || '').replace(/-/g, '').toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) return null;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// GET https://api.notion.com/v1/oauth/authorize?client_id&response_type=code&owner=user&redirect_uri&state
function notionAuthorize(req, res, ctx) {
  const q = paramsToObject(ctx.query);
  const clientId = firstOf(q.client_id);
  const redirectUri = firstOf(q.redirect_uri);
  const state = firstOf(q.state);
  if (!clientId) return sendHTML(res, 400, 'Notion: invalid client', 'Missing or invalid client_id.');
  if (!redirectUri) return sendHTML(res, 400, 'Notion: invalid redirect_uri', 'Missing redirect_uri.');
  if (firstOf(q.response_type) !== 'code') return sendHTML(res, 400, 'Notion: invalid request', 'response_type must be "code".');
  if (firstOf(q.owner) !== 'user') return sendHTML(res, 400, 'Notion: invalid request', 'owner must be "user".');
  if (ctx.consent.deny || firstOf(q.mock_deny) === '1') return redirectWith(res, redirectUri, { error: ctx.consent.deny || 'access_denied', state });
  const code = newCode('notion', {
    client_id: clientId, redirect_uri: redirectUri, state, scopes: [],
    code_challenge: firstOf(q.code_challenge) || null, code_challenge_method: firstOf(q.code_challenge_method) || null,
    user: ctx.consent.user || DEFAULT_USER.notion, authorize_query: q,
  });
  return redirectWith(res, redirectUri, { code: code.code, state });
}

// POST https://api.notion.com/v1/oauth/token  (Basic client auth, JSON body)
function notionToken(req, res, ctx) {
  if (req.method !== 'POST') return notionErr(res, 405, 'invalid_request', 'Method not allowed.');
  const basic = basicAuth(req);
  const j = ctx.bodyText ? parseJSON(ctx.bodyText) : { ok: false };
  const grant = j.ok && j.value ? j.value.grant_type : undefined;
  countGrant('notion', grant || 'none');
  // Client credentials only in HTTP Basic; body client_id/secret is ignored.
  if (!basic) return notionOAuthErr(res, 401, 'invalid_client', 'Client authentication failed: use HTTP Basic with client_id:client_secret.');
  const cc = checkClient('notion', basic.user, basic.pass);
  if (cc !== 'ok') return notionOAuthErr(res, 401, 'invalid_client', 'Client authentication failed.');
  if (!contentTypeIs(req, 'application/json') || !j.ok || !j.value || typeof j.value !== 'object') {
    return notionOAuthErr(res, 400, 'invalid_request', 'Request body must be a JSON object (Content-Type: application/json).');
  }
  const b = j.value;
  const ws = S.data.notion.workspace;
  const issue = (user, botId, old) => {
    const acc = remember({ token: makeAccessToken('notion'), provider: 'notion', kind: 'access', user, client_id: basic.user, scopes: [], token_type: 'bearer', bot_id: botId,
      expires_at: S.config.notion.access_ttl ? now() + S.config.notion.access_ttl * 1000 : null });
    const ref = remember({ token: makeRefreshToken('notion'), provider: 'notion', kind: 'refresh', user, client_id: basic.user, scopes: [], token_type: 'bearer', bot_id: botId, pair: acc.token });
    acc.pair = ref.token;
    if (old) old.rotated_to = ref.token;
    const out = {
      access_token: acc.token, token_type: 'bearer', refresh_token: ref.token, bot_id: botId,
      workspace_name: ws.name, workspace_icon: null, workspace_id: ws.id,
      owner: { type: 'user', user: { object: 'user', id: user, name: 'Mock User', avatar_url: null, type: 'person', person: { email: 'mock-user@example.com' } } },
      duplicated_template_id: null, request_id: uuid(),
    };
    if (S.config.notion.access_ttl) out.expires_in = S.config.notion.access_ttl;
    return out;
  };

  if (b.grant_type === 'authorization_code') {
    const t = takeCode('notion', b.code, basic.user);
    if (t.error) return notionOAuthErr(res, 400, 'invalid_grant', 'Invalid code.');
    if (t.rec.redirect_uri && b.redirect_uri !== t.rec.redirect_uri) return notionOAuthErr(res, 400, 'invalid_grant', 'redirect_uri does not match the one of the authorization request.');
    if (!checkPkce(t.rec, b.code_verifier)) return notionOAuthErr(res, 400, 'invalid_grant', 'Invalid code_verifier.');
    t.rec.used = true;
    countGrant('notion', b.grant_type, true);
    return send(res, 200, issue(t.rec.user, uuid(), null));
  }
  if (b.grant_type === 'refresh_token') {
    const old = b.refresh_token ? S.tokens.get(b.refresh_token) : null;
    if (!old || old.provider !== 'notion' || old.kind !== 'refresh' || tokenStatus(old) !== 'active' || (old.client_id && old.client_id !== basic.user)) {
      return notionOAuthErr(res, 400, 'invalid_grant', 'Token has been expired or revoked.');
    }
    // Rotation of both: the used refresh token dies now, and (config
    // notion.refresh_revokes_old_access) so does the access token it came with.
    old.used = true;
    if (S.config.notion.refresh_revokes_old_access && old.pair && S.tokens.has(old.pair)) S.tokens.get(old.pair).revoked = true;
    countGrant('notion', b.grant_type, true);
    return send(res, 200, issue(old.user, old.bot_id || uuid(), old));
  }
  return notionOAuthErr(res, 400, 'unsupported_grant_type', 'grant_type must be authorization_code or refresh_token.');
}

// POST https://api.notion.com/v1/oauth/revoke  (Basic client auth, JSON {"token"})
function notionRevoke(req, res, ctx) {
  const basic = basicAuth(req);
  if (!basic || checkClient('notion', basic.user, basic.pass) !== 'ok') return notionOAuthErr(res, 401, 'invalid_client', 'Client authentication failed.');
  const j = ctx.bodyText ? parseJSON(ctx.bodyText) : { ok: false };
  if (!contentTypeIs(req, 'application/json') || !j.ok || !j.value || typeof j.value.token !== 'string') {
    return notionOAuthErr(res, 400, 'invalid_request', 'Body must be JSON {"token": "..."}.');
  }
  const rec = S.tokens.get(j.value.token);
  if (!rec || rec.provider !== 'notion') return notionOAuthErr(res, 400, 'invalid_grant', 'Token is invalid or already revoked.');
  revokeWithPair(rec);
  return send(res, 200, { request_id: uuid() });
}

function notionObjects() {
  const d = S.data.notion;
  return [...d.pages.values(), ...d.databases.values()];
}
function notionTitle(o) {
  if (o.object === 'database') return o.title.map((t) => t.plain_text).join('');
  for (const v of Object.values(o.properties || {})) if (v.type === 'title') return (v.title || []).map((t) => t.plain_text).join('');
  return '';
}

// POST /v1/search {query, filter, sort, start_cursor, page_size}
function notionSearch(req, res, b) {
  let list = notionObjects();
  if (b.query !== undefined && typeof b.query !== 'string') return notionErr(res, 400, 'validation_error', `body failed validation: body.query should be a string, instead was \`${JSON.stringify(b.query)}\`.`);
  if (b.filter !== undefined) {
    const f = b.filter;
    if (!f || typeof f !== 'object' || f.property !== 'object' || !['page', 'database'].includes(f.value)) {
      return notionErr(res, 400, 'validation_error', 'body failed validation: body.filter.value should be `"page"` or `"database"`, and body.filter.property should be `"object"`.');
    }
    list = list.filter((o) => o.object === f.value);
  }
  let size = b.page_size === undefined ? 100 : b.page_size;
  if (!Number.isInteger(size) || size < 1 || size > 100) return notionErr(res, 400, 'validation_error', `body failed validation: body.page_size should be a number between 1 and 100, instead was \`${JSON.stringify(b.page_size)}\`.`);
  const q = (b.query || '').toLowerCase().trim();
  if (q) list = list.filter((o) => notionTitle(o).toLowerCase().includes(q));
  const asc = b.sort && b.sort.direction === 'ascending';
  list.sort((x, y) => (x.last_edited_time < y.last_edited_time ? 1 : -1) * (asc ? -1 : 1));
  let start = 0;
  if (b.start_cursor !== undefined) {
    const id = notionId(b.start_cursor);
    start = id ? list.findIndex((o) => o.id === id) : -1;
    if (start < 0) return notionErr(res, 400, 'validation_error', `start_cursor provided is invalid: ${b.start_cursor}`);
  }
  const page = list.slice(start, start + size);
  const next = list[start + size];
  return send(res, 200, {
    object: 'list', results: page, next_cursor: next ? next.id : null, has_more: !!next,
    type: 'page_or_database', page_or_database: {}, request_id: uuid(),
  });
}

// GET /v1/pages/{page_id}
function notionGetPage(req, res, raw) {
  const id = notionId(raw);
  if (!id) return notionErr(res, 400, 'validation_error', `path failed validation: path.page_id should be a valid uuid, instead was \`"${raw}"\`.`);
  const page = S.data.notion.pages.get(id);
  if (!page) return notionErr(res, 404, 'object_not_found', `Could not find page with ID: ${id}. Make sure the relevant pages and databases are shared with your integration.`);
  return send(res, 200, { ...page, request_id: uuid() });
}

// POST /v1/pages {parent, properties, children}
function notionCreatePage(req, res, b, rec) {
  const d = S.data.notion;
  if (b.parent === undefined) return notionErr(res, 400, 'validation_error', 'body failed validation: body.parent should be defined, instead was `undefined`.');
  if (b.properties === undefined) return notionErr(res, 400, 'validation_error', 'body failed validation: body.properties should be defined, instead was `undefined`.');
  if (!b.properties || typeof b.properties !== 'object' || Array.isArray(b.properties)) return notionErr(res, 400, 'validation_error', 'body failed validation: body.properties should be an object.');
  if (b.children !== undefined) {
    if (!Array.isArray(b.children)) return notionErr(res, 400, 'validation_error', 'body failed validation: body.children should be an array.');
    if (b.children.length > 100) return notionErr(res, 400, 'validation_error', `body failed validation: body.children.length should be ≤ \`100\`, instead was \`${b.children.length}\`.`);
  }
  const par = b.parent;
  let parent;
  let props;
  if (par && typeof par === 'object' && par.page_id !== undefined) {
    const id = notionId(par.page_id);
    if (!id) return notionErr(res, 400, 'validation_error', `body failed validation: body.parent.page_id should be a valid uuid, instead was \`"${par.page_id}"\`.`);
    if (!d.pages.has(id)) return notionErr(res, 404, 'object_not_found', `Could not find page with ID: ${id}. Make sure the relevant pages and databases are shared with your integration.`);
    parent = { type: 'page_id', page_id: id };
    // Under a page only the title property exists.
    const keys = Object.keys(b.properties);
    const bad = keys.find((k) => k !== 'title');
    if (bad) return notionErr(res, 400, 'validation_error', `${bad} is not a property that exists.`);
    const t = b.properties.title;
    const arr = t && (Array.isArray(t) ? t : t.title);
    if (!Array.isArray(arr)) return notionErr(res, 400, 'validation_error', 'body failed validation: body.properties.title.title should be an array.');
    props = { title: { id: 'title', type: 'title', title: arr.map((x) => richText(x && x.text ? String(x.text.content) : String(x && x.plain_text || ''))[0]) } };
  } else if (par && typeof par === 'object' && par.database_id !== undefined) {
    const id = notionId(par.database_id);
    if (!id) return notionErr(res, 400, 'validation_error', `body failed validation: body.parent.database_id should be a valid uuid, instead was \`"${par.database_id}"\`.`);
    const db = d.databases.get(id);
    if (!db) return notionErr(res, 404, 'object_not_found', `Could not find database with ID: ${id}. Make sure the relevant pages and databases are shared with your integration.`);
    parent = { type: 'database_id', database_id: id };
    props = {};
    for (const [k, v] of Object.entries(b.properties)) {
      const schema = db.properties[k];
      if (!schema) return notionErr(res, 400, 'validation_error', `${k} is not a property that exists.`);
      if (schema.type === 'title') {
        const arr = v && (Array.isArray(v) ? v : v.title);
        if (!Array.isArray(arr)) return notionErr(res, 400, 'validation_error', `body failed validation: body.properties.${k}.title should be an array.`);
        props[k] = { id: schema.id, type: 'title', title: arr.map((x) => richText(x && x.text ? String(x.text.content) : '')[0]) };
      } else {
        props[k] = { id: schema.id, type: schema.type, ...(v && typeof v === 'object' ? v : {}) };
      }
    }
    if (!Object.values(props).some((v) => v.type === 'title')) props.Name = { id: 'title', type: 'title', title: [] };
  } else {
    return notionErr(res, 400, 'validation_error', 'body failed validation: body.parent.page_id should be defined, instead was `undefined`. body.parent.database_id should be defined, instead was `undefined`.');
  }
  const id = uuid();
  const ts = new Date(Math.floor(now() / 60000) * 60000).toISOString(); // Notion rounds to the minute
  const user = { object: 'user', id: rec.user };
  const page = {
    object: 'page', id, created_time: ts, last_edited_time: ts, created_by: user, last_edited_by: user,
    cover: b.cover || null, icon: b.icon || null, parent, archived: false, in_trash: false, properties: props, url: '', public_url: null,
  };
  page.url = notionUrl(notionTitle(page), id);
  d.pages.set(id, page);
  if (b.children) d.blocks = (d.blocks || new Map()).set(id, b.children);
  return send(res, 200, { ...page, request_id: uuid() });
}

// ===========================================================================
// GITHUB
// ===========================================================================
//
// Real behaviour reproduced:
// - login/oauth/access_token answers form-encoded
//   (access_token=..&scope=..&token_type=bearer) unless the request says
//   Accept: application/json; errors (bad_verification_code,
//   incorrect_client_credentials, redirect_uri_mismatch, bad_refresh_token)
//   come inside an HTTP 200.
// - PKCE: only S256; when the authorize request had a code_challenge, the
//   code_verifier must match (error name: mock's choice, bad_verification_code).
// - Expiring user tokens: ghu_ token, expires_in 28800, ghr_ refresh token,
//   refresh_token_expires_in; a refresh rotates the refresh token (the old
//   one then gets bad_refresh_token).
// - Revoke: DELETE /applications/{client_id}/grant with Basic client auth and
//   JSON {"access_token"} -> 204; deleting the grant revokes every token of
//   that user for the app.
// - REST API: User-Agent is required (403 otherwise); 401 {"message":"Bad
//   credentials"}; 422 Validation Failed; x-ratelimit-* headers on every
//   answer; Link headers for pagination; per_page is capped at 100; search
//   only reaches the first 1000 results.

const GH_DOCS = 'https://docs.github.com/rest';

function github(req, res, ctx) {
  const p = ctx.path;
  if (p === '/github/login/oauth/authorize') return githubAuthorize(req, res, ctx);
  if (p === '/github/login/oauth/access_token') return githubToken(req, res, ctx);
  if (p.startsWith('/github/api/')) return githubApi(req, res, ctx, p.slice('/github/api'.length));
  return sendHTML(res, 404, 'Not Found', 'GitHub mock: no such page');
}

// GET https://github.com/login/oauth/authorize?client_id&redirect_uri&scope&state&code_challenge&code_challenge_method=S256
function githubAuthorize(req, res, ctx) {
  const q = paramsToObject(ctx.query);
  const clientId = firstOf(q.client_id);
  const redirectUri = firstOf(q.redirect_uri);
  const state = firstOf(q.state);
  if (!clientId) return sendHTML(res, 404, 'Not Found', 'GitHub shows a 404 page for a missing or unknown client_id.');
  if (!redirectUri) return sendHTML(res, 400, 'Redirect URI missing', 'The mock has no app configuration: send redirect_uri.');
  const challenge = firstOf(q.code_challenge) || null;
  const method = firstOf(q.code_challenge_method) || null;
  // GitHub supports only S256.
  if (challenge && method !== 'S256') {
    return redirectWith(res, redirectUri, { error: 'invalid_request', error_description: 'code_challenge_method must be S256', state });
  }
  if (ctx.consent.deny || firstOf(q.mock_deny) === '1') {
    return redirectWith(res, redirectUri, {
      error: ctx.consent.deny || 'access_denied',
      error_description: 'The user has denied your application access.',
      error_uri: 'https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied',
      state,
    });
  }
  // Scopes are space-separated (commas are tolerated too).
  const asked = (firstOf(q.scope) || '').split(/[\s,]+/).filter(Boolean);
  const granted = ctx.consent.scopes ? asked.filter((s) => ctx.consent.scopes.includes(s)) : asked;
  const code = newCode('github', {
    client_id: clientId, redirect_uri: redirectUri, state, scopes: granted, code_challenge: challenge, code_challenge_method: method,
    user: ctx.consent.user || DEFAULT_USER.github, authorize_query: q,
  });
  return redirectWith(res, redirectUri, { code: code.code, state });
}

// Answer the token endpoint in the format the Accept header asks for.
function githubTokenAnswer(req, res, obj) {
  const accept = String(req.headers.accept || '').toLowerCase();
  if (accept.includes('application/json')) return send(res, 200, obj);
  if (accept.includes('application/xml')) {
    const xml = '<OAuth>' + Object.entries(obj).map(([k, v]) => `<${k}>${String(v).replace(/[<&]/g, (c) => (c === '<' ? '&lt;' : '&amp;'))}</${k}>`).join('') + '</OAuth>';
    return send(res, 200, xml, { 'Content-Type': 'application/xml; charset=utf-8' });
  }
  const form = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) form.append(k, String(v));
  return send(res, 200, form.toString(), { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' });
}
function githubTokenError(req, res, error, description, anchor) {
  return githubTokenAnswer(req, res, {
    error, error_description: description,
    error_uri: `https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#${anchor || error.replace(/_/g, '-')}`,
  });
}

// POST https://github.com/login/oauth/access_token
function githubToken(req, res, ctx) {
  if (req.method !== 'POST') return send(res, 404, { message: 'Not Found', documentation_url: GH_DOCS, status: '404' });
  // Parameters may come in the query string, a form body or a JSON body.
  const args = paramsToObject(ctx.query);
  if (ctx.bodyText) {
    if (contentTypeIs(req, 'application/json')) {
      const j = parseJSON(ctx.bodyText);
      if (j.ok && j.value && typeof j.value === 'object') Object.assign(args, j.value);
    } else {
      Object.assign(args, paramsToObject(new URLSearchParams(ctx.bodyText)));
    }
  }
  for (const k of Object.keys(args)) args[k] = firstOf(args[k]);
  const basic = basicAuth(req);
  const clientId = args.client_id || (basic && basic.user);
  const secret = args.client_secret || (basic && basic.pass);
  const grant = args.grant_type || 'authorization_code';
  countGrant('github', grant);
  if (checkClient('github', clientId, secret) !== 'ok') {
    return githubTokenError(req, res, 'incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
  }
  const cfg = S.config.github;
  const issue = (user, scopes) => {
    const expiring = !!cfg.expiring_tokens;
    const acc = remember({
      token: makeAccessToken('github', 'bearer', expiring), provider: 'github', kind: 'access', user, client_id: clientId, scopes, token_type: 'bearer',
      expires_at: expiring ? now() + cfg.access_ttl * 1000 : null,
    });
    // Scope in the answer is comma-separated (GitHub Apps answer "";
    // the mock reports the granted scopes either way).
    const out = { access_token: acc.token };
    if (expiring) {
      const ref = remember({
        token: makeRefreshToken('github'), provider: 'github', kind: 'refresh', user, client_id: clientId, scopes, token_type: 'bearer',
        pair: acc.token, expires_at: now() + cfg.refresh_ttl * 1000,
      });
      acc.pair = ref.token;
      Object.assign(out, { expires_in: cfg.access_ttl, refresh_token: ref.token, refresh_token_expires_in: cfg.refresh_ttl });
    }
    Object.assign(out, { token_type: 'bearer', scope: scopes.join(',') });
    return { out, acc };
  };

  if (grant === 'refresh_token') {
    const old = args.refresh_token ? S.tokens.get(args.refresh_token) : null;
    if (!old || old.provider !== 'github' || old.kind !== 'refresh' || tokenStatus(old) !== 'active' || (old.client_id && old.client_id !== clientId)) {
      return githubTokenError(req, res, 'bad_refresh_token', 'The refresh token passed is incorrect or expired.');
    }
    old.used = true;
    const { out } = issue(old.user, old.scopes);
    old.rotated_to = out.refresh_token || null;
    countGrant('github', grant, true);
    return githubTokenAnswer(req, res, out);
  }
  if (grant !== 'authorization_code') return githubTokenError(req, res, 'unsupported_grant_type', 'The grant type is not supported.');

  const t = takeCode('github', args.code, clientId);
  if (t.error) return githubTokenError(req, res, 'bad_verification_code', 'The code passed is incorrect or expired.');
  const code = t.rec;
  if (args.redirect_uri && code.redirect_uri && args.redirect_uri !== code.redirect_uri) {
    return githubTokenError(req, res, 'redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
  }
  if (!checkPkce(code, args.code_verifier)) {
    return githubTokenError(req, res, 'bad_verification_code', 'The code_verifier does not match the code_challenge of the authorization request.');
  }
  code.used = true;
  countGrant('github', grant, true);
  return githubTokenAnswer(req, res, issue(code.user, code.scopes).out);
}

// Rate-limit bookkeeping: x-ratelimit-* on every API answer.
function githubRate(key, resource) {
  const limits = { core: 5000, search: 30 };
  const windowMs = resource === 'search' ? 60000 : 3600000;
  const k = `${key}|${resource}`;
  let r = S.rate.get(k);
  if (!r || r.reset * 1000 <= now()) { r = { used: 0, reset: Math.floor((now() + windowMs) / 1000) }; S.rate.set(k, r); }
  r.used++;
  const limit = key === 'anon' ? (resource === 'search' ? 10 : 60) : limits[resource];
  return {
    exceeded: r.used > limit,
    headers: {
      'x-ratelimit-limit': String(limit), 'x-ratelimit-remaining': String(Math.max(0, limit - r.used)),
      'x-ratelimit-reset': String(r.reset), 'x-ratelimit-used': String(Math.min(r.used, limit)), 'x-ratelimit-resource': resource,
    },
  };
}

function githubApi(req, res, ctx, sub) {
  const base = { 'x-github-media-type': 'github.v3; format=json', 'x-github-api-version-selected': '2022-11-28', 'x-github-request-id': `${randHex(4).toUpperCase()}:${randHex(6).toUpperCase()}` };
  // Requests without a User-Agent are refused by api.github.com.
  if (!req.headers['user-agent']) {
    return send(res, 403, 'Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n',
      { 'Content-Type': 'text/plain; charset=utf-8' });
  }

  // Revoke: DELETE /applications/{client_id}/grant and .../token (Basic client auth).
  let m = /^\/applications\/([^/]+)\/(grant|token)$/.exec(sub);
  if (m) return githubRevoke(req, res, ctx, decodeURIComponent(m[1]), m[2], base);

  const tok = bearerToken(req, true);
  const auth = tok ? checkAccess('github', tok) : { status: 'missing' };
  if (tok && auth.status !== 'ok') {
    return send(res, 401, { message: 'Bad credentials', documentation_url: GH_DOCS, status: '401' }, base);
  }
  const rec = auth.rec || null;
  const resource = sub.startsWith('/search/') ? 'search' : 'core';
  const rate = githubRate(rec ? rec.token : 'anon', resource);
  const h = { ...base, ...rate.headers };
  if (rec) { h['x-oauth-scopes'] = rec.scopes.join(', '); h['x-accepted-oauth-scopes'] = resource === 'search' ? '' : 'repo'; }
  if (rate.exceeded && S.config.github.enforce_rate_limits) {
    return send(res, 403, { message: `API rate limit exceeded for ${rec ? 'user ID 1001' : '127.0.0.1'}.`, documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api', status: '403' }, h);
  }
  const q = paramsToObject(ctx.query);
  for (const k of Object.keys(q)) q[k] = firstOf(q[k]);

  if (sub === '/user' && req.method === 'GET') {
    if (!rec) return ghRequiresAuth(res, h, 'users/users#get-the-authenticated-user');
    const u = S.data.github.user;
    return send(res, 200, { ...u, login: rec.user, avatar_url: `https://avatars.githubusercontent.com/u/${u.id}?v=4`, url: `https://api.github.com/users/${rec.user}`, html_url: `https://github.com/${rec.user}` }, h);
  }
  if (sub === '/user/repos' && req.method === 'GET') {
    if (!rec) return ghRequiresAuth(res, h, 'repos/repos#list-repositories-for-the-authenticated-user');
    return githubListRepos(req, res, ctx, q, rec, h);
  }
  if (sub === '/search/issues' && req.method === 'GET') return githubSearchIssues(req, res, ctx, q, rec, h);
  return send(res, 404, { message: 'Not Found', documentation_url: GH_DOCS, status: '404' }, h);
}

function ghRequiresAuth(res, h, anchor) {
  return send(res, 401, { message: 'Requires authentication', documentation_url: `https://docs.github.com/rest/${anchor}`, status: '401' }, h);
}
function ghValidation(res, h, errors, doc, message) {
  const body = { message: message || 'Validation Failed' };
  if (errors) body.errors = errors;
  body.documentation_url = doc;
  body.status = '422';
  return send(res, 422, body, h);
}

function githubRevoke(req, res, ctx, clientId, what, h) {
  if (req.method !== 'DELETE') return send(res, 404, { message: 'Not Found', documentation_url: GH_DOCS, status: '404' }, h);
  const basic = basicAuth(req);
  if (!basic) return ghRequiresAuth(res, h, 'apps/oauth-applications#delete-an-app-authorization');
  // Wrong client credentials: GitHub answers 404 here.
  if (basic.user !== clientId || checkClient('github', basic.user, basic.pass) !== 'ok') {
    return send(res, 404, { message: 'Not Found', documentation_url: GH_DOCS, status: '404' }, h);
  }
  const j = ctx.bodyText ? parseJSON(ctx.bodyText) : { ok: false };
  const at = j.ok && j.value ? j.value.access_token : undefined;
  const doc = `https://docs.github.com/rest/apps/oauth-applications#delete-an-app-${what === 'grant' ? 'authorization' : 'token'}`;
  if (typeof at !== 'string' || !at) return ghValidation(res, h, [{ resource: 'OauthAccess', field: 'access_token', code: 'missing_field' }], doc);
  const rec = S.tokens.get(at);
  if (!rec || rec.provider !== 'github' || rec.kind !== 'access' || (rec.client_id && rec.client_id !== clientId)) {
    return send(res, 404, { message: 'Not Found', documentation_url: doc, status: '404' }, h);
  }
  if (what === 'grant') {
    // Deleting the grant revokes every token of this user for this app.
    for (const t of S.tokens.values()) if (t.provider === 'github' && t.user === rec.user && t.client_id === rec.client_id) t.revoked = true;
    rec.revoked = true;
  } else {
    revokeWithPair(rec);
  }
  res.writeHead(204, h);
  return res.end();
}

function ghLink(req, ctx, q, page, last) {
  const host = req.headers.host || `127.0.0.1:${server.address().port}`;
  const base = `http://${host}${ctx.path}`;
  const mk = (n) => { const sp = new URLSearchParams(q); sp.set('page', String(n)); return `<${base}?${sp}>`; };
  const parts = [];
  if (page > 1) parts.push(`${mk(page - 1)}; rel="prev"`);
  if (page < last) parts.push(`${mk(page + 1)}; rel="next"`, `${mk(last)}; rel="last"`);
  if (page > 1) parts.push(`${mk(1)}; rel="first"`);
  return parts.join(', ');
}

function ghPaging(q) {
  let per = parseInt(q.per_page === undefined ? 30 : q.per_page, 10);
  if (!Number.isFinite(per) || per < 1) per = 30;
  per = Math.min(per, 100); // GitHub silently caps per_page at 100
  let page = parseInt(q.page === undefined ? 1 : q.page, 10);
  if (!Number.isFinite(page) || page < 1) page = 1;
  return { per, page };
}

// GET /user/repos: visibility, affiliation, type, sort, direction, per_page, page
function githubListRepos(req, res, ctx, q, rec, h) {
  const doc = 'https://docs.github.com/rest/repos/repos#list-repositories-for-the-authenticated-user';
  if (q.type !== undefined && (q.visibility !== undefined || q.affiliation !== undefined)) {
    return ghValidation(res, h, null, doc, 'If you specify visibility or affiliation, you cannot specify type.');
  }
  if (q.visibility !== undefined && !['all', 'public', 'private'].includes(q.visibility)) {
    return ghValidation(res, h, [{ resource: 'Repository', field: 'visibility', code: 'invalid' }], doc);
  }
  const affs = (q.affiliation || 'owner,collaborator,organization_member').split(',').map((s) => s.trim()).filter(Boolean);
  if (affs.some((a) => !['owner', 'collaborator', 'organization_member'].includes(a))) {
    return ghValidation(res, h, [{ resource: 'Repository', field: 'affiliation', code: 'invalid' }], doc);
  }
  const sort = q.sort || 'full_name';
  if (!['created', 'updated', 'pushed', 'full_name'].includes(sort)) {
    return ghValidation(res, h, [{ resource: 'Repository', field: 'sort', code: 'invalid' }], doc);
  }
  let list = S.data.github.repos.filter((r) => affs.includes(r._affiliation));
  // Private repositories need the repo scope on a classic token.
  if (!rec.scopes.includes('repo')) list = list.filter((r) => !r.private);
  const vis = q.visibility || 'all';
  if (vis !== 'all') list = list.filter((r) => r.visibility === vis);
  if (q.type) {
    if (q.type === 'owner') list = list.filter((r) => r._affiliation === 'owner');
    else if (q.type === 'public' || q.type === 'private') list = list.filter((r) => r.visibility === q.type);
    else if (q.type === 'member') list = list.filter((r) => r._affiliation !== 'owner');
  }
  const key = { created: 'created_at', updated: 'updated_at', pushed: 'pushed_at', full_name: 'full_name' }[sort];
  const dir = q.direction || (sort === 'full_name' ? 'asc' : 'desc');
  list = [...list].sort((a, b) => (a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0) * (dir === 'asc' ? 1 : -1));
  const { per, page } = ghPaging(q);
  const last = Math.max(1, Math.ceil(list.length / per));
  const link = ghLink(req, ctx, q, page, last);
  const hh = link ? { ...h, Link: link } : h;
  return send(res, 200, clean(list.slice((page - 1) * per, page * per)), hh);
}

// GET /search/issues?q=..&sort&order&per_page&page
function githubSearchIssues(req, res, ctx, q, rec, h) {
  const doc = 'https://docs.github.com/v3/search';
  if (q.q === undefined || String(q.q).trim() === '') return ghValidation(res, h, [{ resource: 'Search', field: 'q', code: 'missing' }], doc);
  if (String(q.q).length > 256) return ghValidation(res, h, [{ message: 'The search is longer than 256 characters.', resource: 'Search', field: 'q', code: 'invalid' }], doc);
  const { per, page } = ghPaging(q);
  if (page * per > 1000 && (page - 1) * per >= 1000) return ghValidation(res, h, null, doc, 'Only the first 1000 search results are available');

  // Qualifiers: repo:, is:issue|pr|open|closed, state:, type:, label:, author:, user:/org:; the rest are keywords.
  const words = [];
  const f = {};
  for (const tok of String(q.q).match(/(?:[^\s"]+|"[^"]*")+/g) || []) {
    const mm = /^(-?)([a-z_-]+):(.+)$/i.exec(tok);
    if (mm && ['repo', 'is', 'state', 'type', 'label', 'author', 'user', 'org', 'in'].includes(mm[2].toLowerCase())) {
      const k = mm[2].toLowerCase();
      const v = mm[3].replace(/^"|"$/g, '').toLowerCase();
      if (k === 'is' && ['issue', 'pr'].includes(v)) f.type = v;
      else if (k === 'is' || k === 'state') f.state = v;
      else if (k === 'type') f.type = v === 'pr' || v === 'pull-request' ? 'pr' : 'issue';
      else (f[k] = f[k] || []).push(v);
    } else {
      words.push(tok.replace(/^"|"$/g, '').toLowerCase());
    }
  }
  const canPrivate = rec && rec.scopes.includes('repo');
  let items = S.data.github.issues.filter((it) => {
    if (it._private && !canPrivate) return false;
    if (f.repo && !f.repo.includes(it._repo.toLowerCase())) return false;
    const owner = it._repo.split('/')[0].toLowerCase();
    if (f.user && !f.user.includes(owner)) return false;
    if (f.org && !f.org.includes(owner)) return false;
    if (f.type === 'pr' && !it.pull_request) return false;
    if (f.type === 'issue' && it.pull_request) return false;
    if (f.state && it.state !== f.state) return false;
    if (f.label && !f.label.every((l) => it.labels.some((x) => x.name.toLowerCase() === l))) return false;
    if (f.author && !f.author.includes(it.user.login.toLowerCase())) return false;
    const hay = `${it.title} ${it.body || ''}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  });
  const sortKey = { comments: (x) => x.comments, created: (x) => x.created_at, updated: (x) => x.updated_at, reactions: (x) => x.reactions.total_count, interactions: (x) => x.comments + x.reactions.total_count }[String(q.sort || '').replace(/^reactions-.*/, 'reactions')];
  if (sortKey) {
    const asc = q.order === 'asc';
    items = [...items].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0) * (asc ? 1 : -1));
  }
  const total = items.length;
  const last = Math.max(1, Math.min(Math.ceil(total / per), Math.floor(1000 / per)));
  const link = ghLink(req, ctx, q, page, last);
  const hh = link ? { ...h, Link: link } : h;
  return send(res, 200, { total_count: total, incomplete_results: false, items: clean(items.slice((page - 1) * per, page * per)) }, hh);
}

// ===========================================================================
// OPENWEATHER
// ===========================================================================
//
// Real behaviour reproduced:
// - The key travels in the appid query parameter; a missing or unknown key
//   answers 401 {"cod":401,"message":"Invalid API key. ..."} (cod a number).
// - City not found answers 404 {"cod":"404","message":"city not found"} and
//   a request without a location 400 {"cod":"400","message":"Nothing to
//   geocode"}: there cod is a STRING.
// - units standard (Kelvin, default) | metric | imperial; lang translates
//   the description.

const OW_WEATHER = {
  800: { main: 'Clear', en: 'clear sky', fr: 'ciel dégagé', de: 'klarer Himmel', es: 'cielo claro', icon: '01d' },
  801: { main: 'Clouds', en: 'few clouds', fr: 'peu nuageux', de: 'ein paar Wolken', es: 'algo de nubes', icon: '02d' },
  803: { main: 'Clouds', en: 'broken clouds', fr: 'nuageux', de: 'Überwiegend bewölkt', es: 'muy nuboso', icon: '04d' },
  500: { main: 'Rain', en: 'light rain', fr: 'légère pluie', de: 'Leichter Regen', es: 'lluvia ligera', icon: '10d' },
};

function openweather(req, res, ctx) {
  if (ctx.path !== '/openweather/data/2.5/weather') return send(res, 404, { cod: '404', message: 'Internal error' });
  const q = paramsToObject(ctx.query);
  for (const k of Object.keys(q)) q[k] = firstOf(q[k]);
  const key = checkAccess('openweather', q.appid, ['api_key']);
  if (key.status !== 'ok') {
    return send(res, 401, { cod: 401, message: 'Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.' });
  }
  const cities = S.data.openweather.cities;
  let city;
  if (q.q) {
    const [name, a, b] = String(q.q).split(',').map((s) => s.trim().toLowerCase());
    const country = b || a;
    city = cities.find((c) => c.name.toLowerCase() === name && (!country || c.country.toLowerCase() === country || (c.state || '').toLowerCase() === country));
  } else if (q.id) {
    city = cities.find((c) => String(c.id) === String(q.id));
  } else if (q.lat !== undefined && q.lon !== undefined) {
    city = [...cities].sort((x, y) => Math.hypot(x.coord.lat - q.lat, x.coord.lon - q.lon) - Math.hypot(y.coord.lat - q.lat, y.coord.lon - q.lon))[0];
  } else {
    return send(res, 400, { cod: '400', message: 'Nothing to geocode' });
  }
  if (!city) return send(res, 404, { cod: '404', message: 'city not found' });
  const units = ['metric', 'imperial'].includes(q.units) ? q.units : 'standard';
  const conv = (k) => {
    const v = units === 'metric' ? k - 273.15 : units === 'imperial' ? (k - 273.15) * 9 / 5 + 32 : k;
    return Math.round(v * 100) / 100;
  };
  const wind = units === 'imperial' ? Math.round(city.wind * 2.23694 * 100) / 100 : city.wind;
  const w = OW_WEATHER[city.weather];
  const lang = String(q.lang || 'en').toLowerCase();
  const t = nowSec();
  return send(res, 200, {
    coord: city.coord,
    weather: [{ id: city.weather, main: w.main, description: w[lang] || w.en, icon: w.icon }],
    base: 'stations',
    main: { temp: conv(city.kelvin), feels_like: conv(city.kelvin - 1.2), temp_min: conv(city.kelvin - 1.5), temp_max: conv(city.kelvin + 1.1), pressure: city.pressure, humidity: city.humidity, sea_level: city.pressure, grnd_level: city.pressure - 4 },
    visibility: 10000,
    wind: { speed: wind, deg: city.deg },
    clouds: { all: city.clouds },
    dt: t,
    sys: { type: 2, id: 2000000 + (city.id % 1000), country: city.country, sunrise: t - 6 * 3600, sunset: t + 6 * 3600 },
    timezone: city.tz,
    id: city.id,
    name: city.name,
    cod: 200,
  });
}

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

resetAll();
server.on('error', (e) => {
  process.stderr.write(`providers.js: ${e.message}\n`);
  process.exit(1);
});
server.listen(ARGS.port, ARGS.host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
