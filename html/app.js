/*
 * The gateway's dashboard: a single page calling the API of the same
 * origin with the project's admin key (sessionStorage, bearer header).
 * Every piece of data goes into the page through textContent or a form
 * control's value, never as markup.
 */
'use strict';

const S = window.sessionStorage;
const main = document.getElementById('main');
const statusLine = document.getElementById('status');

function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (k === 'text') e.textContent = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else if (v === true) e.setAttribute(k, '');
        else if (v !== false && v !== null && v !== undefined)
            e.setAttribute(k, v);
    }
    for (const kid of kids) {
        if (kid !== null && kid !== undefined)
            e.append(typeof kid === 'string' ? document.createTextNode(kid)
                                             : kid);
    }
    return e;
}

function field(label, input) {
    return el('label', {}, label, input);
}

function check(label, input) {
    return el('label', { class: 'check' }, input, label);
}

function say(text, bad) {
    statusLine.textContent = text;
    statusLine.className = bad ? 'error' : 'ok';
}

class ApiError extends Error {}

async function api(method, path, body, headers) {
    const h = Object.assign({ Authorization: 'Bearer ' + S.getItem('key') },
                            headers || {});
    if (body !== undefined) h['Content-Type'] = 'application/json';
    let res;
    try {
        res = await fetch(path, { method, headers: h,
            body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
        throw new ApiError('the gateway does not answer: ' + e.message);
    }
    let doc = null;
    try { doc = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
        throw new ApiError(doc && doc.message
            ? doc.message + ' (' + doc.error + ')'
            : 'HTTP ' + res.status);
    }
    return doc;
}

const pid = () => encodeURIComponent(S.getItem('project'));
const base = () => '/v1/projects/' + pid();

function errorBox(e) {
    return el('p', { class: 'error', role: 'alert', text: e.message });
}

/* --- sign-in ------------------------------------------------------------ */

function signIn() {
    document.getElementById('nav').hidden = true;
    const project = el('input', { type: 'text', id: 'project', required: true,
                                  autocomplete: 'username' });
    const key = el('input', { type: 'password', id: 'key', required: true,
                              autocomplete: 'current-password' });
    const out = el('div');
    const form = el('form', { onsubmit: async (ev) => {
        ev.preventDefault();
        S.setItem('project', project.value.trim());
        S.setItem('key', key.value.trim());
        try {
            await api('GET', base() + '/connectors');
            location.hash = '#connectors';
            route();
        } catch (e) {
            S.removeItem('key');
            out.replaceChildren(errorBox(e));
        }
    } }, field('Project id', project), field('Admin key', key),
        el('div', { class: 'actions' },
           el('button', { type: 'submit', text: 'Sign in' })), out);
    main.replaceChildren(el('section', {}, el('h2', { text: 'Sign in' }),
        el('p', { class: 'muted', text: 'The key stays in this tab '
                + '(sessionStorage) and is sent only to this gateway.' }),
        form));
    project.focus();
}

/* --- connectors --------------------------------------------------------- */

async function connectorsPage() {
    const [catalog, enabled] = await Promise.all([
        api('GET', '/v1/connectors'), api('GET', base() + '/connectors')]);
    const panel = el('div', { id: 'panel' });
    const have = new Set(enabled.connectors.map((c) => c.connector_slug));

    const cat = el('table', { id: 'catalog' },
        el('thead', {}, el('tr', {}, ...['Connector', 'Type', 'Category',
            'Tools', ''].map((t) => el('th', { text: t })))),
        el('tbody', {}, ...catalog.connectors.map((c) => el('tr', {},
            el('td', { text: c.name }), el('td', { text: c.type }),
            el('td', { text: c.category || '' }),
            el('td', { text: c.tools.map((t) => t.name).join(', ') }),
            el('td', {}, el('button', { type: 'button',
                'aria-label': 'Enable ' + c.name, text: 'Enable',
                disabled: have.has(c.slug) && c.type !== 'remote_mcp',
                onclick: () => connectorForm(panel, c, null) }))))));

    const list = el('table', { id: 'enabled' },
        el('thead', {}, el('tr', {}, ...['Id', 'Connector', 'Status',
            'Scopes', ''].map((t) => el('th', { text: t })))),
        el('tbody', {}, ...enabled.connectors.map((c) => el('tr', {},
            el('td', { text: c.id }), el('td', { text: c.name }),
            el('td', { text: status(c) }),
            el('td', { text: c.oauth_scopes.join(', ') }),
            el('td', {}, c.source === 'config'
                ? el('span', { class: 'muted',
                               text: 'read-only (nginx.conf)' })
                : el('span', { class: 'actions' },
                    el('button', { type: 'button', class: 'secondary',
                        'aria-label': 'Edit ' + c.id, text: 'Edit',
                        onclick: () => connectorForm(panel,
                            catalog.connectors.find(
                                (d) => d.slug === c.connector_slug), c) }),
                    el('button', { type: 'button', class: 'danger',
                        'aria-label': 'Disable ' + c.id, text: 'Disable',
                        onclick: () => disableAsk(panel, c) })))))));

    main.replaceChildren(
        el('h2', { text: 'Project Settings › Connectors' }), panel,
        el('section', {}, el('h3', { text: 'Enabled connectors' }),
           enabled.connectors.length ? list
               : el('p', { class: 'muted', text: 'None yet: enable one '
                           + 'from the catalog below.' })),
        el('section', {}, el('h3', { text: 'Catalog' }), cat));
}

function status(c) {
    const s = ['enabled', c.source === 'config' ? 'from nginx.conf'
                                                 : 'from the API'];
    if (c.type === 'oauth' && !c.has_secret) s.push('no client secret');
    if (!c.require_auth) s.push('auth not required');
    return s.join(' · ');
}

function connectorForm(panel, def, conn) {
    const editing = conn !== null;
    const inputs = {};
    const rows = [];
    const add = (name, label, input) => { inputs[name] = input;
                                          rows.push(field(label, input)); };

    if (def.type === 'remote_mcp' && !editing) {
        add('id', 'Connector id', el('input', { type: 'text', id: 'f-id',
            required: true, pattern: '[A-Za-z0-9_-]{1,64}' }));
    }
    if (def.type === 'oauth') {
        add('oauth_client_id', 'OAuth client id', el('input', { type: 'text',
            id: 'f-client-id', required: !editing,
            value: editing ? conn.oauth_client_id || '' : '' }));
        add('oauth_client_secret', 'OAuth client secret', el('input', {
            type: 'password', id: 'f-client-secret', required: !editing,
            autocomplete: 'off',
            placeholder: editing && conn.has_secret ? 'set (leave empty '
                         + 'to keep it)' : '' }));
        add('oauth_scopes', 'Scopes (comma-separated)', el('input', {
            type: 'text', id: 'f-scopes',
            value: (editing ? conn.oauth_scopes
                            : def.default_scopes || []).join(',') }));
    }
    if (def.type === 'api_key') {
        add('api_key', 'Service API key (optional when end users bring '
            + 'their own)', el('input', { type: 'password', id: 'f-api-key',
            autocomplete: 'off',
            placeholder: editing && conn.has_api_key ? 'set (leave empty '
                         + 'to keep it)' : '' }));
    }
    if (def.type === 'remote_mcp') {
        add('mcp_url', 'MCP server URL', el('input', { type: 'url',
            id: 'f-mcp-url', required: true,
            value: editing ? conn.mcp_url || '' : '' }));
    }
    const allow = el('input', { type: 'checkbox', id: 'f-allow',
        checked: editing ? conn.allow_end_user_auth : true });
    const require = el('input', { type: 'checkbox', id: 'f-require',
        checked: editing ? conn.require_auth : true });
    const out = el('div');

    const form = el('form', { id: 'connector-form', onsubmit: async (ev) => {
        ev.preventDefault();
        const body = editing ? {} : { connector_slug: def.slug };
        /* an empty secret while editing keeps the stored one */
        for (const [k, input] of Object.entries(inputs)) {
            const v = input.value.trim();
            if (v !== '') body[k] = v;
        }
        body.allow_end_user_auth = allow.checked;
        body.require_auth = require.checked;
        try {
            const c = editing
                ? await api('PATCH', base() + '/connectors/'
                            + encodeURIComponent(conn.id), body)
                : await api('POST', base() + '/connectors', body);
            await connectorsPage();
            say((editing ? 'Saved ' : 'Enabled ') + c.name + ' as "'
                + c.id + '".');
        } catch (e) {
            out.replaceChildren(errorBox(e));
        }
    } }, ...rows,
        check('Allow end users to connect their own account',
              allow),
        check('Require auth (a call without the user\'s credential '
              + 'answers auth_required)', require),
        def.redirect_uri ? el('div', {},
            el('p', { text: 'Redirect URI to paste into ' + def.name
                      + '\'s OAuth app:' }),
            el('p', { class: 'code', id: 'redirect-uri',
                      text: def.redirect_uri })) : null,
        el('div', { class: 'actions' },
           el('button', { type: 'submit', text: 'Save' }),
           el('button', { type: 'button', class: 'secondary', text: 'Cancel',
                          onclick: () => panel.replaceChildren() })),
        out);

    panel.replaceChildren(el('section', {}, el('h3', {
        text: (editing ? 'Edit ' + conn.id : 'Enable ' + def.name) }), form));
    (form.querySelector('input') || form.querySelector('button')).focus();
}

function disableAsk(panel, c) {
    const out = el('div');
    const yes = el('button', { type: 'button', class: 'danger',
        id: 'confirm-disable', text: 'Disable and revoke tokens',
        onclick: async () => {
            try {
                const r = await api('DELETE', base() + '/connectors/'
                                    + encodeURIComponent(c.id));
                await connectorsPage();
                say('Disabled "' + c.id + '": ' + r.revoked_tokens
                    + ' end-user token' + (r.revoked_tokens === 1 ? ' was'
                    : 's were') + ' revoked.');
            } catch (e) {
                out.replaceChildren(errorBox(e));
            }
        } });
    panel.replaceChildren(el('section', { class: 'warning',
        role: 'alertdialog', 'aria-labelledby': 'disable-title' },
        el('h3', { id: 'disable-title', text: 'Disable ' + c.id + '?' }),
        el('p', { id: 'disable-warning', text: 'Every end-user token of "'
                  + c.id + '" will be revoked: each user must connect '
                  + 'again after it is enabled again. Agents lose its '
                  + 'tools.' }),
        el('div', { class: 'actions' }, yes,
           el('button', { type: 'button', class: 'secondary', text: 'Cancel',
                          onclick: () => panel.replaceChildren() })), out));
    yes.focus();
}

/* --- agents ------------------------------------------------------------- */

async function agentsPage(open) {
    const [agents, enabled] = await Promise.all([
        api('GET', base() + '/agents'), api('GET', base() + '/connectors')]);
    const panel = el('div', { id: 'agent-panel' });
    const newId = el('input', { type: 'text', id: 'new-agent',
                                required: true });
    const out = el('div');

    main.replaceChildren(el('h2', { text: 'Agents' }),
        el('section', {}, el('table', { id: 'agents' },
            el('thead', {}, el('tr', {}, ...['Agent', 'Connectors', 'Source',
                ''].map((t) => el('th', { text: t })))),
            el('tbody', {}, agents.agents.length ? null : el('tr', {},
                el('td', { colspan: 4, class: 'muted', text: 'No agent has '
                           + 'an assignment yet: add one by id.' })),
                ...agents.agents.map((a) => el('tr', {},
                el('td', { text: a.id }),
                el('td', { text: a.connectors === null ? 'all enabled'
                                 : a.connectors.join(', ') || 'none' }),
                el('td', { text: a.source }),
                el('td', {}, el('button', { type: 'button',
                    class: 'secondary', 'aria-label': 'Connectors of '
                    + a.id, text: 'Connectors',
                    onclick: () => agentPanel(panel, a.id, enabled) })))))),
           el('form', { onsubmit: (ev) => { ev.preventDefault();
                   if (newId.value.trim())
                       agentPanel(panel, newId.value.trim(), enabled); } },
              field('Add an agent by id', newId),
              el('div', { class: 'actions' },
                 el('button', { type: 'submit', text: 'Add' })), out)),
        panel);
    if (open) await agentPanel(panel, open, enabled);
}

async function agentPanel(panel, id, enabled) {
    const aid = encodeURIComponent(id);
    let now;
    try {
        now = await api('GET', base() + '/agents/' + aid + '/connectors');
    } catch (e) {
        panel.replaceChildren(errorBox(e));
        return;
    }
    const boxes = enabled.connectors.map((c) => el('input', {
        type: 'checkbox', value: c.id, id: 'assign-' + c.id,
        checked: now.connectors === null || now.connectors.includes(c.id) }));
    const tools = el('ul', { class: 'tools', id: 'agent-tools' });
    const out = el('div');

    async function showTools() {
        const t = await api('GET', base() + '/tools', undefined,
                            { 'X-Astralform-Agent': id });
        tools.replaceChildren(...t.tools.map((x) => el('li', {},
            el('strong', { text: x.name }), ' — ' + x.description)));
        if (!t.tools.length)
            tools.replaceChildren(el('li', { text: 'no tools' }));
    }

    panel.replaceChildren(el('section', {},
        el('h3', { text: 'Agents › ' + id + ' › Connectors' }),
        el('form', { id: 'assign-form', onsubmit: async (ev) => {
            ev.preventDefault();
            try {
                await api('PUT', base() + '/agents/' + aid + '/connectors',
                    { connectors: boxes.filter((b) => b.checked)
                                       .map((b) => b.value) });
                await agentsPage(id);
                say('Saved the connectors of "' + id + '".');
            } catch (e) {
                out.replaceChildren(errorBox(e));
            }
        } }, el('fieldset', {}, el('legend', { text: 'Connectors' }),
            ...(boxes.length ? boxes.map((b) => check(b.value, b))
                             : [el('p', { text: 'No connector is enabled.' })])),
            el('div', { class: 'actions' },
               el('button', { type: 'submit', text: 'Save' })), out),
        el('h4', { text: 'Tools this agent gets' }), tools));
    await showTools().catch((e) => out.replaceChildren(errorBox(e)));
    panel.scrollIntoView();
}

/* --- troubleshooting ---------------------------------------------------- */

async function troubleshootingPage() {
    const enabled = await api('GET', base() + '/connectors');
    const conn = el('select', { id: 't-connector', required: true },
        ...enabled.connectors.map((c) => el('option', { value: c.id,
                                                       text: c.id })));
    const agent = el('input', { type: 'text', id: 't-agent' });
    const user = el('input', { type: 'text', id: 't-user' });
    const out = el('div', { id: 't-result' });

    main.replaceChildren(el('h2', { text: 'Troubleshooting' }),
        el('section', {}, el('p', { class: 'muted', text: 'Why does an '
            + 'agent not get a connector\'s tools, or a call answer '
            + 'auth_required?' }),
        el('form', { onsubmit: async (ev) => {
            ev.preventDefault();
            const q = new URLSearchParams({ connector: conn.value });
            if (agent.value.trim()) q.set('agent', agent.value.trim());
            if (user.value.trim()) q.set('user', user.value.trim());
            try {
                const d = await api('GET', base() + '/diagnose?' + q);
                out.replaceChildren(el('table', { id: 'checks' },
                    el('tbody', {}, ...['is_enabled', 'assigned',
                        'authenticated'].map((k) => {
                        const c = d.checks[k];
                        return el('tr', {}, el('th', { text: k }),
                            el('td', { class: c.ok === true ? 'ok'
                                       : c.ok === false ? 'error' : 'muted',
                                       text: c.ok === true ? 'pass'
                                       : c.ok === false ? 'fail'
                                       : 'not checked' }),
                            el('td', { text: c.hint }));
                    }))));
            } catch (e) {
                out.replaceChildren(errorBox(e));
            }
        } }, field('Connector', conn), field('Agent id (optional)', agent),
            field('User id (optional)', user),
            el('div', { class: 'actions' },
               el('button', { type: 'submit', text: 'Check' }))), out));
}

/* --- routing ------------------------------------------------------------ */

const pages = { connectors: connectorsPage, agents: agentsPage,
                troubleshooting: troubleshootingPage };

async function route() {
    if (!S.getItem('key')) return signIn();
    const name = location.hash.slice(1) in pages ? location.hash.slice(1)
                                                 : 'connectors';
    document.getElementById('nav').hidden = false;
    statusLine.textContent = '';
    document.getElementById('who').textContent = 'project '
                                                 + S.getItem('project');
    for (const p of Object.keys(pages)) {
        const a = document.getElementById('nav-' + p);
        if (p === name) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
    }
    try {
        await pages[name]();
    } catch (e) {
        main.replaceChildren(errorBox(e));
    }
}

document.getElementById('signout').addEventListener('click', () => {
    S.clear();
    say('Signed out.');
    route();
});
window.addEventListener('hashchange', route);
route();
