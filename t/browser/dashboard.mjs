// The dashboard in real Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser download): the seed's "Enabling a Connector"
// and "Assigning to Agents" done as a person would, plus troubleshooting,
// disabling and a wrong key.  Every API answer the page receives is checked
// against docs/openapi.json.  Prints "ok - ..." / "not ok - ..." lines for
// t/080-dashboard.t; exits 3 with "SKIP ..." when Chromium cannot start.
//
//   node dashboard.mjs --base URL --project ID --key KEY --screens DIR

import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { openapiChecker } from './openapi-check.mjs';

const arg = (n) => process.argv[process.argv.indexOf('--' + n) + 1];
const base = arg('base'), project = arg('project'), key = arg('key');
const screens = arg('screens');
const exe = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(screens, { recursive: true });

let failed = 0;
function ok(cond, name, extra) {
    console.log((cond ? 'ok - ' : 'not ok - ') + name);
    if (!cond) { failed++; if (extra !== undefined) console.log('# ' + extra); }
}

async function api(method, path, body) {
    const r = await fetch(base + path, { method, headers: {
        Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined });
    return [r.status, await r.json()];
}

let browser;
try {
    browser = await chromium.launch({ executablePath: exe, headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
} catch (e) {
    console.log('SKIP Chromium cannot start (' + exe + '): '
                + e.message.split('\n')[0]);
    process.exit(3);
}

const check = openapiChecker();
const problems = [];
const ctx = await browser.newContext({ viewport: { width: 1280,
                                                   height: 800 } });
const page = await ctx.newPage();
const cspErrors = [];
// answers with an error status (the wrong key's 401) are expected here
page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text()))
        cspErrors.push(m.text());
});
page.on('pageerror', (e) => cspErrors.push(e.message));
page.on('response', async (res) => {
    const u = new URL(res.url());
    if (!u.pathname.startsWith('/v1/')) return;
    let body = '';
    try { body = await res.text(); } catch (e) { /* redirect, HEAD */ }
    problems.push(...check(res.request().method(), u.pathname + u.search,
                           res.status(), res.headers()['content-type'],
                           body));
});
const t = 10000;
page.setDefaultTimeout(t);

try {
    // a wrong key: the API's own message
    await page.goto(base + '/dashboard/');
    await page.getByLabel('Project id').fill(project);
    await page.getByLabel('Admin key').fill('not-the-key-at-all-0000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    ok((await alert.textContent()).includes(
        'send a valid project key as "Authorization: Bearer KEY" '
        + '(invalid_api_key)'), 'a wrong key shows the API\'s message');
    await page.screenshot({ path: screens + '/signin-error.png' });

    // sign in with the keyboard
    await page.getByLabel('Admin key').fill(key);
    await page.getByLabel('Admin key').press('Enter');
    await page.getByRole('heading', { name: /Connectors/ }).waitFor();
    ok(true, 'signed in (Enter in the key field)');
    ok(await page.evaluate(() => sessionStorage.getItem('key')) === key,
       'the key is kept in sessionStorage');
    ok((await page.locator('#enabled').textContent())
           .includes('read-only (nginx.conf)'),
       'a config-defined connector is read-only');

    // enable Notion through the form
    await page.getByRole('button', { name: 'Enable Notion' }).click();
    const form = page.locator('#connector-form');
    const labels = await form.locator('label').allTextContents();
    ok(labels.some((l) => l.startsWith('OAuth client id'))
       && labels.some((l) => l.startsWith('OAuth client secret'))
       && !labels.some((l) => /API key|MCP/.test(l)),
       'the Notion form has the OAuth fields and no others',
       JSON.stringify(labels));
    const [, cat] = await api('GET', '/v1/connectors');
    const notionDef = cat.connectors.find((c) => c.slug === 'notion');
    ok(await page.getByLabel(/Scopes/).inputValue()
           === notionDef.default_scopes.join(','),
       'scopes are prefilled from the catalog');
    ok((await page.locator('#redirect-uri').textContent())
           === base + '/v1/connectors/oauth/callback',
       'the exact redirect URI is shown');
    await page.getByLabel('OAuth client id').fill('notion-client-from-ui');
    await page.getByLabel('OAuth client secret').fill('ui-secret-9f8e7d6c5b4a');
    await page.screenshot({ path: screens + '/enable-notion.png',
                            fullPage: true });
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('status').filter({ hasText: 'Enabled Notion' })
        .waitFor();
    let [st, c] = await api('GET', `/v1/projects/${project}/connectors/notion`);
    ok(st === 200 && c.oauth_client_id === 'notion-client-from-ui'
       && c.has_secret === true && c.require_auth === true,
       'the API shows Notion enabled with the form\'s values',
       JSON.stringify(c));
    await page.screenshot({ path: screens + '/connectors.png',
                            fullPage: true });

    // edit its scopes; the secret is write-only
    await page.getByRole('button', { name: 'Edit notion' }).click();
    ok(await page.getByLabel('OAuth client secret').inputValue() === ''
       && (await page.getByLabel('OAuth client secret')
               .getAttribute('placeholder')).startsWith('set'),
       'the secret is shown as "set", never its value');
    await page.getByLabel(/Scopes/).fill('read_content,update_content');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('status').filter({ hasText: 'Saved Notion' })
        .waitFor();
    [st, c] = await api('GET', `/v1/projects/${project}/connectors/notion`);
    ok(JSON.stringify(c.oauth_scopes)
           === '["read_content","update_content"]' && c.has_secret,
       'the API shows the new scopes, secret kept', JSON.stringify(c));

    // assign it to an agent
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.getByLabel('Add an agent by id').fill('support-bot');
    await page.getByRole('button', { name: 'Add' }).click();
    await page.getByRole('heading', { name: /support-bot › Connectors/ })
        .waitFor();
    for (const box of await page.locator('#assign-form input[type=checkbox]')
                                .all()) {
        await box.setChecked((await box.getAttribute('value')) === 'notion');
    }
    await page.locator('#assign-form').getByRole('button', { name: 'Save' })
        .click();
    await page.getByRole('status').filter({ hasText: 'support-bot' })
        .waitFor();
    const tools = await page.locator('#agent-tools').textContent();
    ok(tools.includes('notion_search') && !tools.includes('openweather'),
       'the agent\'s tool list is Notion\'s tools', tools);
    [st, c] = await api('GET',
        `/v1/projects/${project}/agents/support-bot/connectors`);
    ok(JSON.stringify(c.connectors) === '["notion"]',
       'the API shows the assignment', JSON.stringify(c));
    ok((await page.locator('#agents').textContent())
           .includes('support-botnotionapi'),
       'the agents list shows support-bot with notion (GET /agents)');
    await page.screenshot({ path: screens + '/agents.png', fullPage: true });

    // troubleshoot a user
    await page.getByRole('link', { name: 'Troubleshooting' }).click();
    await page.getByRole('heading', { name: 'Troubleshooting' }).waitFor();
    await page.locator('#t-connector').selectOption('notion');
    await page.getByLabel(/Agent id/).fill('support-bot');
    await page.getByLabel(/User id/).fill('alice');
    await page.getByRole('button', { name: 'Check' }).click();
    await page.locator('#checks').waitFor();
    const rows = await page.locator('#checks tr').allTextContents();
    ok(rows.length === 3 && rows[0].startsWith('is_enabledpass')
       && rows[1].startsWith('assignedpass')
       && rows[2].startsWith('authenticatedfail'),
       'the three checks: enabled, assigned, not authenticated',
       JSON.stringify(rows));
    ok(/alice/.test(rows[2]), 'the failing check says what to do',
       rows[2]);
    await page.screenshot({ path: screens + '/troubleshooting.png',
                            fullPage: true });

    // disable it after the warning
    await page.getByRole('link', { name: 'Connectors' }).click();
    await page.getByRole('button', { name: 'Disable notion' }).click();
    const warn = await page.locator('#disable-warning').textContent();
    ok(warn.includes('Every end-user token of "notion" will be revoked'),
       'disabling warns that every end-user token is revoked');
    await page.screenshot({ path: screens + '/disable-warning.png' });
    await page.keyboard.press('Enter');   // the focused confirm button
    const done = page.getByRole('status')
        .filter({ hasText: 'Disabled "notion"' });
    await done.waitFor();
    ok(/: 1 end-user token was revoked\./.test(await done.textContent()),
       'then it shows how many tokens were revoked',
       await done.textContent());
    [st] = await api('GET', `/v1/projects/${project}/connectors/notion`);
    ok(st === 404, 'the API no longer has Notion');

    // a phone's width
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('button', { name: 'Enable Notion' }).click();
    const width = await page.evaluate(() =>
        document.documentElement.scrollWidth);
    ok(width <= 390, 'no horizontal scrolling at 390 px', String(width));
    await page.screenshot({ path: screens + '/phone.png', fullPage: true });
} catch (e) {
    ok(false, 'the flow ran to the end', e.stack);
}

ok(cspErrors.length === 0, 'no script error or CSP violation',
   cspErrors.join(' | '));
ok(problems.length === 0, 'every API answer the page got validates '
   + 'against docs/openapi.json', problems.join(' | '));
await browser.close();
console.log(failed ? `# ${failed} failed` : '# all passed');
process.exit(failed ? 1 : 0);
