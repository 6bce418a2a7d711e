#!/usr/bin/env node
// A real OAuth 2.0 / OpenID Connect authorization server for the
// ngx_astralform_module test suite: oidc-provider (npm) with one confidential
// client, PKCE S256 enforced, rotating refresh tokens, opaque access tokens,
// and an automatic login + consent so that tests need no browser.
//
//   node t/servers/oidc-server.mjs --port N --redirect-uri URI [options]
//
// Options (see README.md next to this file):
//   --host H                 listen address (default 127.0.0.1); the issuer is http://H:PORT
//   --redirect-uri URI       the client's redirect URI (repeatable; at least one)
//   --access-ttl SECONDS     access token lifetime (default 3600)
//   --refresh-ttl SECONDS    refresh token lifetime (default 1209600 = 14 days)
//   --refresh MODE           offline (default: refresh token only when offline_access
//                            was granted, the oidc-provider rule) | always | never
//   --client-auth METHOD     basic (default: client_secret_basic) | post (client_secret_post)
//   --client-id ID           default astralform-test
//   --client-secret SECRET   default astralform-test-secret-0123456789
//   --account ID             account the automatic login signs in (default user-1)
//   --deny                   every interaction ends with error=access_denied
//   --quiet                  no log lines on stderr
//
// Prints "listening N" on stdout once the socket accepts connections.

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

// ---------------------------------------------------------------- options

function usage(msg) {
  if (msg) process.stderr.write(`oidc-server: ${msg}\n`);
  process.stderr.write('usage: node oidc-server.mjs --port N --redirect-uri URI [--host H] [--access-ttl S]'
    + ' [--refresh-ttl S] [--refresh offline|always|never] [--client-auth basic|post] [--client-id ID]'
    + ' [--client-secret S] [--account ID] [--deny] [--quiet]\n');
  process.exit(msg ? 2 : 0);
}

function parseArgs(argv) {
  const o = {
    port: 0,
    host: '127.0.0.1',
    redirectUris: [],
    accessTtl: 3600,
    refreshTtl: 14 * 24 * 3600,
    refresh: 'offline',
    clientAuth: 'basic',
    clientId: 'astralform-test',
    clientSecret: 'astralform-test-secret-0123456789',
    account: 'user-1',
    deny: false,
    quiet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--port': o.port = Number(val()); break;
      case '--host': o.host = val(); break;
      case '--redirect-uri': o.redirectUris.push(val()); break;
      case '--access-ttl': o.accessTtl = Number(val()); break;
      case '--refresh-ttl': o.refreshTtl = Number(val()); break;
      case '--refresh': o.refresh = val(); break;
      case '--client-auth': o.clientAuth = val(); break;
      case '--client-id': o.clientId = val(); break;
      case '--client-secret': o.clientSecret = val(); break;
      case '--account': o.account = val(); break;
      case '--deny': o.deny = true; break;
      case '--quiet': o.quiet = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown option ${a}`);
    }
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) usage('bad --port');
  if (!o.redirectUris.length) usage('--redirect-uri is required');
  for (const u of o.redirectUris) {
    try { new URL(u); } catch { usage(`bad --redirect-uri ${u}`); }
  }
  if (!(Number.isInteger(o.accessTtl) && o.accessTtl > 0)) usage('bad --access-ttl');
  if (!(Number.isInteger(o.refreshTtl) && o.refreshTtl > 0)) usage('bad --refresh-ttl');
  if (!['offline', 'always', 'never'].includes(o.refresh)) usage('bad --refresh');
  if (!['basic', 'post'].includes(o.clientAuth)) usage('bad --client-auth');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const log = (...a) => { if (!opts.quiet) process.stderr.write(`oidc-server: ${a.join(' ')}\n`); };

// ---------------------------------------------------------------- storage
// An in-memory adapter of our own, so that the test hooks can list and
// destroy tokens (expire every access token, revoke every refresh token).

const stores = new Map(); // model name -> Map(id -> { payload, expiresAt })

class MemoryStore {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.map = stores.get(name);
  }

  static live(rec) {
    return rec && (!rec.expiresAt || rec.expiresAt > Date.now());
  }

  async upsert(id, payload, expiresIn) {
    this.map.set(id, {
      payload: structuredClone(payload),
      expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : 0,
    });
  }

  async find(id) {
    const rec = this.map.get(id);
    if (!MemoryStore.live(rec)) {
      this.map.delete(id);
      return undefined;
    }
    return structuredClone(rec.payload);
  }

  async findByUid(uid) {
    for (const [id, rec] of this.map) {
      if (rec.payload.uid === uid) return this.find(id);
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [id, rec] of this.map) {
      if (rec.payload.userCode === userCode) return this.find(id);
    }
    return undefined;
  }

  async consume(id) {
    const rec = this.map.get(id);
    if (rec) rec.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.map.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [id, rec] of this.map) {
      if (rec.payload.grantId === grantId) this.map.delete(id);
    }
  }
}

function destroyAll(name) {
  const m = stores.get(name);
  if (!m) return 0;
  const n = m.size;
  m.clear();
  return n;
}

// ---------------------------------------------------------------- accounts

function accountClaims(accountId) {
  return {
    sub: accountId,
    name: `Test User ${accountId}`,
    given_name: 'Test',
    family_name: `User ${accountId}`,
    preferred_username: accountId,
    email: `${accountId}@example.test`,
    email_verified: true,
  };
}

// ---------------------------------------------------------------- stats

function freshStats() {
  return {
    authorization_requests: 0,
    interactions: 0,
    interactions_denied: 0,
    token_requests: 0,
    token_by_grant_type: {},
    token_errors: 0,
    token_errors_by_code: {},
    userinfo_requests: 0,
    userinfo_errors: 0,
    revocation_requests: 0,
    refresh_tokens_issued: 0,
    last_authorization: null,
    last_token_request: null,
    last_userinfo_request: null,
    last_revocation_request: null,
  };
}
let stats = freshStats();
let denyAll = opts.deny;

function clientAuthUsed(ctx) {
  const authz = ctx.get('authorization');
  if (/^basic /i.test(authz)) return 'client_secret_basic';
  const body = ctx.oidc?.body ?? {};
  if (body.client_secret !== undefined) return 'client_secret_post';
  if (body.client_assertion !== undefined) return 'client_assertion';
  return 'none';
}

// ---------------------------------------------------------------- the provider

async function makeProvider(issuer) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

  const configuration = {
    adapter: MemoryStore,
    jwks: { keys: [signingJwk] },
    clients: [{
      client_id: opts.clientId,
      client_secret: opts.clientSecret,
      client_name: 'Astralform test gateway',
      redirect_uris: opts.redirectUris,
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: opts.clientAuth === 'post' ? 'client_secret_post' : 'client_secret_basic',
    }],
    // PKCE is required for every authorization request; oidc-provider 9 only
    // knows S256 (plain is refused).
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    findAccount: async (_ctx, sub) => ({
      accountId: sub,
      claims: async () => accountClaims(sub),
    }),
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
    },
    issueRefreshToken: async (_ctx, client, code) => {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      if (opts.refresh === 'never') return false;
      if (opts.refresh === 'always') return true;
      return code.scopes.has('offline_access');
    },
    rotateRefreshToken: true,
    ttl: {
      AccessToken: () => opts.accessTtl, // read per token: POST /__oidc/config?access_ttl= changes it
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: opts.refreshTtl,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    interactions: {
      url: async (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    cookies: {
      keys: [crypto.randomBytes(32).toString('hex')],
    },
    // A plain, parseable error page (tests read it).
    renderError: async (ctx, out) => {
      ctx.type = 'application/json';
      ctx.body = JSON.stringify(out);
    },
  };

  const provider = new Provider(issuer, configuration);

  // Counters and the last request of each kind, read by GET /__oidc/stats.
  provider.use(async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;
    if (!route) return;
    const at = new Date().toISOString();
    switch (route) {
      case 'authorization':
        stats.authorization_requests++;
        stats.last_authorization = {
          at,
          status: ctx.status,
          query: Object.fromEntries(Object.entries(ctx.query).map(([k, v]) => [k, v])),
        };
        break;
      case 'resume':
        break;
      case 'token': {
        const body = ctx.oidc.body ?? {};
        const gt = String(body.grant_type ?? '');
        stats.token_requests++;
        stats.token_by_grant_type[gt] = (stats.token_by_grant_type[gt] ?? 0) + 1;
        let resp = null;
        if (typeof ctx.body === 'object' && ctx.body) resp = ctx.body;
        if (ctx.status >= 400) {
          stats.token_errors++;
          const code = resp?.error ?? String(ctx.status);
          stats.token_errors_by_code[code] = (stats.token_errors_by_code[code] ?? 0) + 1;
        } else if (resp?.refresh_token) {
          stats.refresh_tokens_issued++;
        }
        stats.last_token_request = {
          at,
          status: ctx.status,
          grant_type: gt,
          client_auth: clientAuthUsed(ctx),
          content_type: ctx.get('content-type'),
          accept: ctx.get('accept'),
          params: Object.keys(body).sort(),
          has_code_verifier: typeof body.code_verifier === 'string',
          redirect_uri: body.redirect_uri,
          scope: body.scope,
          error: ctx.status >= 400 ? resp?.error : undefined,
          response_members: resp && ctx.status < 400 ? Object.keys(resp).filter((k) => resp[k] !== undefined).sort() : undefined,
        };
        break;
      }
      case 'userinfo':
        stats.userinfo_requests++;
        if (ctx.status >= 400) stats.userinfo_errors++;
        stats.last_userinfo_request = {
          at,
          status: ctx.status,
          authorization_scheme: (ctx.get('authorization').split(' ')[0] || null),
          www_authenticate: ctx.response.get('www-authenticate') || undefined,
        };
        break;
      case 'revocation': {
        const body = ctx.oidc.body ?? {};
        stats.revocation_requests++;
        stats.last_revocation_request = {
          at,
          status: ctx.status,
          client_auth: clientAuthUsed(ctx),
          content_type: ctx.get('content-type'),
          params: Object.keys(body).sort(),
          token_type_hint: body.token_type_hint,
        };
        break;
      }
      default:
        break;
    }
  });

  provider.on('server_error', (_ctx, err) => log(`server_error: ${err?.stack ?? err}`));
  provider.on('grant.error', (_ctx, err) => log(`grant.error: ${err.error ?? err.name}: ${err.error_description ?? err.message}`));
  provider.on('authorization.error', (_ctx, err) => log(`authorization.error: ${err.error ?? err.name}: ${err.error_description ?? err.message}`));

  return provider;
}

// ---------------------------------------------------------------- automatic login + consent

// Completes the interaction the provider started, as a user clicking
// "sign in" and "allow" would. Query knobs on the interaction URL:
//   ?deny=1          end with error=access_denied
//   ?account=ID      sign in as ID (else login_hint, else --account)
async function autoInteraction(provider, req, res, url) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  stats.interactions++;

  if (denyAll || url.searchParams.get('deny') === '1') {
    stats.interactions_denied++;
    log(`interaction ${details.uid}: denied (${prompt.name})`);
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }

  const accountId = url.searchParams.get('account')
    || session?.accountId
    || (typeof params.login_hint === 'string' && params.login_hint)
    || opts.account;

  // Grant every scope and claim asked for, in one go with the login.
  let grant;
  if (details.grantId) grant = await provider.Grant.find(details.grantId);
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  if (params.scope) grant.addOIDCScope(params.scope);
  const d = prompt.details ?? {};
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  if (d.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();

  log(`interaction ${details.uid}: ${prompt.name} -> login ${accountId}, consent ${params.scope ?? ''}`);
  return provider.interactionFinished(req, res, {
    login: { accountId },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

// Cookie-free shortcut for tests: run the whole browser leg (authorize URL ->
// interaction -> resume -> redirect_uri) inside this server, keeping the
// cookies here, and answer where the browser would land.
function setCookies(headers) {
  if (typeof headers.getSetCookie === 'function') return headers.getSetCookie();
  const joined = headers.get('set-cookie');
  // split "a=1; path=/, b=2; expires=Thu, 01 Jan 1970 ..." on the commas that start a cookie
  return joined ? joined.split(/,\s*(?=[^;,\s]+=)/) : [];
}

async function autoConsent(base, url) {
  const start = url.searchParams.get('url');
  if (!start) return { status: 400, body: { error: 'invalid_request', message: 'url= (the provider authorize URL) is required' } };
  const knobs = new URLSearchParams();
  if (url.searchParams.get('deny') === '1') knobs.set('deny', '1');
  if (url.searchParams.get('account')) knobs.set('account', url.searchParams.get('account'));

  const jar = new Map();
  let next = new URL(start, base);
  const steps = [];
  for (let i = 0; i < 10; i++) {
    if (next.origin !== base.origin) {
      return { status: 200, body: { redirect_to: next.href, steps } };
    }
    if (next.pathname.startsWith('/interaction/')) {
      for (const [k, v] of knobs) next.searchParams.set(k, v);
    }
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(next, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const sc of setCookies(r.headers)) {
      const [pair] = sc.split(';');
      const eq = pair.indexOf('=');
      const k = pair.slice(0, eq).trim();
      const v = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(sc) || v === '') jar.delete(k); else jar.set(k, v);
    }
    const loc = r.headers.get('location');
    steps.push({ url: next.pathname + (next.pathname.startsWith('/interaction/') ? next.search : ''), status: r.status, location: loc ? new URL(loc, next).pathname : null });
    if (r.status < 300 || r.status >= 400 || !loc) {
      const text = await r.text();
      let body;
      try { body = JSON.parse(text); } catch { body = text.slice(0, 2000); }
      return { status: 502, body: { error: 'flow_stopped', status: r.status, response: body, steps } };
    }
    await r.arrayBuffer().catch(() => {});
    next = new URL(loc, next);
  }
  return { status: 502, body: { error: 'too_many_redirects', steps } };
}

// ---------------------------------------------------------------- HTTP server

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj, null, 1);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

let provider;
let providerCallback;
let baseUrl;

async function handleHook(req, res, url) {
  const p = url.pathname;
  const m = req.method;
  if (p === '/__oidc/stats' && m === 'GET') {
    return sendJson(res, 200, {
      ...stats,
      deny: denyAll,
      live: {
        access_tokens: stores.get('AccessToken')?.size ?? 0,
        refresh_tokens: stores.get('RefreshToken')?.size ?? 0,
        grants: stores.get('Grant')?.size ?? 0,
      },
      config: {
        issuer: baseUrl.origin,
        client_id: opts.clientId,
        client_auth: opts.clientAuth,
        access_ttl: opts.accessTtl,
        refresh_ttl: opts.refreshTtl,
        refresh: opts.refresh,
        redirect_uris: opts.redirectUris,
      },
    });
  }
  if (p === '/__oidc/reset-stats' && m === 'POST') {
    stats = freshStats();
    return sendJson(res, 200, { ok: true });
  }
  if (p === '/__oidc/deny' && m === 'POST') {
    const on = url.searchParams.get('on');
    denyAll = !(on === '0' || on === 'false' || on === 'off');
    return sendJson(res, 200, { deny: denyAll });
  }
  if (p === '/__oidc/config' && m === 'POST') {
    const q = url.searchParams;
    if (q.has('access_ttl')) {
      const n = Number(q.get('access_ttl'));
      if (!(Number.isInteger(n) && n > 0)) return sendJson(res, 400, { error: 'invalid_request', message: 'access_ttl must be a positive integer' });
      opts.accessTtl = n;
    }
    if (q.has('refresh')) {
      if (!['offline', 'always', 'never'].includes(q.get('refresh'))) return sendJson(res, 400, { error: 'invalid_request', message: 'refresh must be offline, always or never' });
      opts.refresh = q.get('refresh');
    }
    if (q.has('deny')) {
      const on = q.get('deny');
      denyAll = !(on === '0' || on === 'false' || on === 'off');
    }
    return sendJson(res, 200, { access_ttl: opts.accessTtl, refresh: opts.refresh, deny: denyAll });
  }
  if (p === '/__oidc/expire-access-tokens' && m === 'POST') {
    return sendJson(res, 200, { destroyed: destroyAll('AccessToken') });
  }
  if (p === '/__oidc/revoke-refresh-tokens' && m === 'POST') {
    return sendJson(res, 200, { destroyed: destroyAll('RefreshToken') });
  }
  if (p === '/__oidc/auto-consent' && m === 'GET') {
    const r = await autoConsent(baseUrl, url);
    return sendJson(res, r.status, r.body);
  }
  return sendJson(res, 404, { error: 'not_found' });
}

const httpServer = http.createServer(async (req, res) => {
  let url;
  try {
    url = new URL(req.url, baseUrl);
  } catch {
    return sendJson(res, 400, { error: 'invalid_request' });
  }
  try {
    if (url.pathname.startsWith('/__oidc/')) return await handleHook(req, res, url);
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) {
      return await autoInteraction(provider, req, res, url);
    }
    return providerCallback(req, res);
  } catch (err) {
    log(`error on ${req.method} ${url.pathname}: ${err?.stack ?? err}`);
    if (!res.headersSent) {
      const status = err?.statusCode ?? 500;
      sendJson(res, status, { error: err?.error ?? 'server_error', error_description: err?.error_description ?? String(err?.message ?? err) });
    } else {
      res.destroy();
    }
  }
});

httpServer.listen(opts.port, opts.host, async () => {
  const { port } = httpServer.address();
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  baseUrl = new URL(`http://${hostForUrl}:${port}`);
  try {
    provider = await makeProvider(baseUrl.origin);
  } catch (err) {
    process.stderr.write(`oidc-server: cannot start the provider: ${err?.stack ?? err}\n`);
    process.exit(1);
  }
  providerCallback = provider.callback();
  process.stdout.write(`listening ${port}\n`);
  log(`issuer ${baseUrl.origin}, client ${opts.clientId} (${opts.clientAuth}), access ttl ${opts.accessTtl}s, refresh ${opts.refresh}${denyAll ? ', deny' : ''}`);
});

function shutdown() {
  httpServer.closeAllConnections?.();
  httpServer.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
