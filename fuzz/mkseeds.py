#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<harness>/ (committed; rerun after
changing the input formats or the catalog). Deterministic: sealed blobs use
nonces derived from their content, so a rerun rewrites the same files.

    python3 fuzz/mkseeds.py

Sealing follows src/ngx_astralform_crypto.c with the test keys of
t/fixtures (master.key as "k1", old.key as "k0")."""

import base64
import glob
import hashlib
import json
import os
import shutil

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'fuzz', 'corpus')
SEP = '\n%%\n'


def key(name):
    with open(os.path.join(ROOT, 't', 'fixtures', name)) as f:
        return bytes.fromhex(f.read().strip())


KEYS = {'k1': key('master.key'), 'k0': key('old.key')}


def aad(project, connector, what, user=''):
    return 'astralform|%s|%s|%s|%s' % (project, connector, what, user)


def seal(plain, ad, kid='k1'):
    if isinstance(plain, str):
        plain = plain.encode()
    head = 'v1.%s.' % kid
    nonce = hashlib.sha256(head.encode() + ad.encode() + plain).digest()[:12]
    ct = AESGCM(KEYS[kid]).encrypt(nonce, plain, (head + ad).encode())
    return head + base64.urlsafe_b64encode(nonce + ct).decode().rstrip('=')


def token(connector, record, user='user-1', kid='k1'):
    return seal(json.dumps(record, separators=(',', ':')),
                aad('p1', connector, 'token', user), kid)


class Corpus:
    def __init__(self, name):
        self.dir = os.path.join(OUT, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.n = 0

    def add(self, label, data):
        if isinstance(data, str):
            data = data.encode()
        self.n += 1
        safe = ''.join(c if c.isalnum() or c in '-_' else '_' for c in label)
        path = os.path.join(self.dir, '%03d-%s' % (self.n, safe))
        with open(path, 'wb') as f:
            f.write(data)


def catalog():
    defs = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'conf', 'connectors',
                                              '*.json'))):
        with open(path) as f:
            defs.append(json.load(f))
    return defs


DEFS = catalog()
TOOLS = {t['name']: (d, t) for d in DEFS for t in d.get('tools', [])}

UUID = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0'

VALID_ARGS = {
    'slack_list_channels': {'types': 'public_channel,im', 'limit': 200,
                            'exclude_archived': True},
    'slack_send_message': {'channel': 'C0123456789', 'text': 'hello *world*',
                           'thread_ts': '1712345678.123456'},
    'slack_search_messages': {'query': 'in:#general budget', 'count': 20,
                              'sort': 'timestamp'},
    'notion_search': {'query': 'notes', 'page_size': 10,
                      'filter': {'property': 'object', 'value': 'page'}},
    'notion_get_page': {'page_id': UUID},
    'notion_create_page': {
        'parent': {'page_id': UUID},
        'properties': {'title': {'title': [{'text': {'content': 'Notes'}}]}},
        'children': [{'object': 'block', 'type': 'paragraph',
                      'paragraph': {'rich_text': []}}]},
    'github_list_repos': {'visibility': 'all', 'per_page': 100, 'page': 2,
                          'affiliation': 'owner,collaborator'},
    'github_search_issues': {'q': 'repo:octo/app is:issue is:open crash',
                             'sort': 'updated', 'order': 'asc'},
    'openweather_current': {'q': 'Portland,OR,US', 'units': 'metric',
                            'lang': 'pt_br'},
}

INVALID_ARGS = [
    {'limit': 0}, {'limit': 1001}, {'limit': 2.5}, {'limit': '10'},
    {'unknown': 1}, {'channel': ''}, {'text': 'x' * 300},
    {'page_id': 'not-a-uuid'}, {'sort': 'nope'}, {'q': None},
    {'filter': {'property': 'object'}}, {'parent': {}},
    {'children': [1, 2]}, {'per_page': 1e300}, {'lang': 'EN'},
    {'q': '\u00e9\u00e9\u00e9'}, {'types': 'public_channel,,im'},
]


def provider_answer(status, body, headers=()):
    lines = [str(status)] + ['%s: %s' % h for h in headers]
    if not isinstance(body, str):
        body = json.dumps(body)
    return '\n'.join(lines) + '\n\n' + body


def schema_seeds():
    c = Corpus('schema')
    for name, args in VALID_ARGS.items():
        c.add(name, name + '\n' + json.dumps(args))
    for i, bad in enumerate(INVALID_ARGS):
        name = list(VALID_ARGS)[i % len(VALID_ARGS)]
        args = dict(VALID_ARGS[name])
        args.update(bad)
        c.add(name + '-bad', name + '\n' + json.dumps(args))
    c.add('null-args', 'slack_list_channels\nnull')
    c.add('dup-key', 'github_search_issues\n{"q":"a","q":"b"}')
    c.add('deep', 'notion_create_page\n{"parent":{"page_id":"%s"},'
          '"properties":%s1%s}' % (UUID, '{"a":' * 40, '}' * 40))
    c.add('any-schema', '*' + SEP + json.dumps({
        'type': ['object', 'null'], 'properties': {
            'a': {'type': 'array', 'items': {'type': 'integer',
                                             'exclusiveMaximum': 3},
                  'minItems': 1, 'maxItems': 2},
            'b': {'const': {'x': [1, 2]}},
            'c': {'pattern': '^(a|b)+$', 'minLength': 2},
            'd': {'enum': [1, 'one', None]}},
        'additionalProperties': {'type': 'string'}, 'minProperties': 1})
          + SEP + json.dumps({'a': [1, 2], 'b': {'x': [1, 2]}, 'c': 'abab',
                              'd': None, 'e': 'free'}))
    c.add('any-bad-pattern', '*' + SEP + '{"pattern":"(["}' + SEP + '"x"')


def open_seeds():
    c = Corpus('open')
    ad = aad('p1', 'slack', 'token', 'user-1')
    rec = '{"type":"oauth","access_token":"xoxp-1","expires_at":0}'
    c.add('raw-k1', 'raw' + SEP + ad + SEP + seal(rec, ad))
    c.add('raw-k0', 'raw' + SEP + ad + SEP + seal(rec, ad, 'k0'))
    c.add('raw-empty-plain', 'raw' + SEP + ad + SEP + seal('', ad))
    c.add('raw-wrong-aad', 'raw' + SEP + ad + 'x' + SEP + seal(rec, ad))
    blob = seal(rec, ad)
    c.add('raw-truncated', 'raw' + SEP + ad + SEP + blob[:-5])
    c.add('raw-padding', 'raw' + SEP + ad + SEP + blob + '==junk')
    c.add('raw-unknown-kid', 'raw' + SEP + ad + SEP + 'v1.k9.' + blob[6:])
    c.add('raw-short', 'raw' + SEP + ad + SEP + 'v1.k1.AAAA')
    c.add('raw-bad-b64', 'raw' + SEP + ad + SEP + 'v1.k1.@@@@')
    c.add('raw-no-dot', 'raw' + SEP + ad + SEP + 'v1.k1')
    c.add('raw-v2', 'raw' + SEP + ad + SEP + 'v2.' + blob[3:])
    c.add('raw-secret', 'raw' + SEP + aad('p1', 'kb', 'api_key') + SEP
          + seal('sk-live-123', aad('p1', 'kb', 'api_key')))
    c.add('seal-flip', 'seal' + SEP + rec + SEP + ad + SEP
          + '\x00\x40\x01\x00\x80\x80')
    c.add('seal-old', 'seal' + SEP + 'hello' + SEP + ad + SEP
          + 'o\x02\xff=\x01\x10\x00')
    c.add('seal-insert', 'seal' + SEP + 'x' * 100 + SEP + '' + SEP
          + '\x02\x80A\x03\xf0\x00\x04\x10\x20')


def body_seeds():
    c = Corpus('body')
    for name, args in VALID_ARGS.items():
        c.add('call-' + name, 'POST tools/call user-1 agent-1\n'
              + json.dumps({'name': name, 'arguments': args}))
    c.add('call-mcp', 'POST tools/call user-1\n'
          '{"name":"docs_search","arguments":{"q":"x"}}')
    c.add('call-kb', 'POST tools/call\n{"name":"kb_lookup"}')
    c.add('call-no-user', 'POST tools/call\n'
          '{"name":"slack_list_channels","arguments":null}')
    c.add('call-unknown', 'POST tools/call u\n{"name":"nope","arguments":{}}')
    c.add('call-bad-args', 'POST tools/call u\n'
          '{"name":"slack_list_channels","arguments":[1]}')
    c.add('call-dup', 'POST tools/call u\n{"name":"a","name":"b"}')
    c.add('enable-mcp', 'POST connectors\n' + json.dumps({
        'connector_slug': 'remote_mcp', 'id': 'wiki',
        'mcp_url': 'https://mcp.wiki.test/mcp', 'require_auth': False}))
    c.add('enable-oauth', 'POST connectors\n' + json.dumps({
        'connector_slug': 'slack', 'id': 'slack2',
        'oauth_client_id': '123.456', 'oauth_client_secret': 's3cr3t',
        'oauth_scopes': 'channels:read, chat:write,,search:read',
        'allow_end_user_auth': True}))
    c.add('enable-scopes-array', 'POST connectors\n' + json.dumps({
        'connector_slug': 'github', 'oauth_client_id': 'Iv1.x',
        'oauth_client_secret': 'y', 'oauth_scopes': ['repo', 'read:user']}))
    c.add('enable-apikey', 'POST connectors\n' + json.dumps({
        'connector_slug': 'openweather', 'id': 'ow-2', 'api_key': 'k' * 40,
        'allow_end_user_auth': False}))
    c.add('enable-bad', 'POST connectors\n' + json.dumps({
        'connector_slug': 'remote_mcp', 'id': 'has space',
        'mcp_url': 'ftp://x'}))
    c.add('enable-unknown', 'POST connectors\n{"connector_slug":"nope"}')
    c.add('patch', 'PATCH connectors/kb\n' + json.dumps({
        'mcp_url': 'https://mcp.kb.test/v2', 'oauth_scopes': None,
        'api_key': None, 'require_auth': True}))
    c.add('patch-config', 'PATCH connectors/slack\n{"require_auth":false}')
    c.add('patch-id', 'PATCH connectors/kb\n{"id":"other"}')
    c.add('assign', 'PUT agents/agent-1/connectors\n'
          '{"connectors":["slack","kb","docs"]}')
    c.add('assign-null', 'PUT agents/agent-1/connectors\n{"connectors":null}')
    c.add('assign-bad', 'PUT agents/a/connectors\n{"connectors":["nope",1]}')
    c.add('assign-extra', 'PUT agents/a/connectors\n{"connectors":[],"x":1}')


def catalog_seeds():
    c = Corpus('catalog')
    for d in DEFS:
        d2 = json.loads(json.dumps(d))
        d2['slug'] = d['slug'] + '_2'
        for t in d2.get('tools', []):
            t['name'] = t['name'] + '_2'
        args = VALID_ARGS.get(d.get('tools', [{}])[0].get('name', ''), {})
        c.add(d2['slug'], json.dumps(d2, indent=1) + SEP + json.dumps(args))
        c.add(d['slug'] + '-dup', json.dumps(d))
    with open(os.path.join(ROOT, 't', 'catalog', 'oidc.json')) as f:
        c.add('oidc', f.read())
    templ = {
        'slug': 'templ', 'name': 'Templates', 'type': 'api_key',
        'api': {'base_url': 'https://api.templ.test/v1/',
                'headers': {'X-Fixed': 'yes', 'Accept': 'application/json'},
                'auth': {'in': 'header', 'name': 'X-Api-Key', 'prefix': ''}},
        'tools': [
            {'name': 'templ_get', 'description': 'd', 'method': 'GET',
             'path': 'items/{id}/sub/{sub}?fixed=1', 'query': ['q', 'n'],
             'input_schema': {'type': 'object', 'properties': {
                 'id': {'type': 'string'}, 'sub': {'type': 'integer'},
                 'q': {'type': 'string'}, 'n': {'type': ['number', 'null']}},
                 'additionalProperties': False}},
            {'name': 'templ_form', 'description': 'd', 'method': 'POST',
             'path': 'form', 'body': ['a', 'b'], 'body_format': 'form',
             'body_fixed': {'fixed': True, 'nested': {'x': 1}},
             'input_schema': {'type': 'object', 'properties': {
                 'a': {}, 'b': {'type': 'object'}}}},
            {'name': 'templ_json', 'description': 'd', 'method': 'PATCH',
             'path': '{unclosed', 'body': ['a'], 'body_format': 'json',
             'input_schema': {'type': 'object', 'properties': {'a': {}}}},
            {'name': 'templ_query_auth', 'description': 'd',
             'method': 'DELETE', 'path': '{a}{a}', 'query': ['a'],
             'input_schema': {'type': 'object',
                              'properties': {'a': {'type': 'string'}}}}]}
    c.add('templ', json.dumps(templ) + SEP + json.dumps(
        {'id': '../../admin?x=1#f', 'sub': 7, 'q': 'a&b=c d', 'n': None,
         'a': 'caf\u00e9/\u00e0', 'b': {'k': [1, 'two']}}))
    templ['api']['auth'] = {'in': 'query', 'name': 'key'}
    templ['slug'] = 'templ_q'
    for t in templ['tools']:
        t['name'] += '_q'
    c.add('templ-q', json.dumps(templ) + SEP + '{"id":"%2e%2e","a":""}')
    bad = [
        '{}', '[]', '{"slug":"Bad-Slug","name":"x","type":"oauth"}',
        '{"slug":"x","name":"x","type":"oauth","oauth":{}}',
        '{"slug":"x","name":"x","type":"api_key","api":{"base_url":"ftp://h"},'
        '"tools":[{"name":"x_t","description":"d","method":"GET","path":"p",'
        '"input_schema":{"type":"object"}}]}',
        '{"slug":"x","name":"x","type":"api_key","api":{"base_url":'
        '"https://u@h/"},"tools":[]}',
        '{"slug":"x","name":"x","type":"api_key","api":{"base_url":'
        '"https://h/"},"tools":[{"name":"slack_send_message","description":'
        '"d","method":"GET","path":"p","input_schema":{"type":"object"}}]}',
        '{"slug":"x","name":"x","type":"api_key","api":{"base_url":'
        '"https://h/"},"tools":[{"name":"x_t","description":"d","method":'
        '"GET","path":"/abs","input_schema":{"type":"object"}}]}',
        '{"slug":"x","name":"x","type":"api_key","api":{"base_url":'
        '"https://h/"},"tools":[{"name":"x_t","description":"d","method":'
        '"GET","path":"p","query":["nope"],"input_schema":{"type":"object",'
        '"properties":{}}}]}',
        '{"slug":"x","slug":"y"}',
        '{"slug":"mcp2","name":"M","type":"remote_mcp","tools":7}',
    ]
    for i, b in enumerate(bad):
        c.add('bad-%d' % i, b)


# provider answers in the shapes of t/mock/providers.js

SLACK_OK = {'ok': True, 'channels': [{'id': 'C1', 'name': 'general'}],
            'response_metadata': {'next_cursor': ''}}
NOTION_PAGE = {'object': 'page', 'id': UUID, 'properties': {}}
GITHUB_ISSUES = {'total_count': 1, 'items': [{'number': 1, 'title': 'x'}]}
WEATHER = {'weather': [{'main': 'Rain'}], 'main': {'temp': 12.5}}


def rec(connector, **kw):
    r = {'type': 'oauth', 'access_token': 'AT-CANARY-$C-1',
         'refresh_token': 'RT-CANARY-$C-1', 'expires_at': 0,
         'scope': 'read', 'token_type': 'bearer'}
    r.update(kw)
    return json.dumps(r)


def provider_seeds():
    c = Corpus('provider')
    P = provider_answer
    cases = [
        ('slack_list_channels', 0, rec('slack'), [P(200, SLACK_OK)]),
        ('slack_send_message', 0, rec('slack'),
         [P(200, {'ok': False, 'error': 'invalid_auth'}),
          P(200, {'ok': True, 'ts': '1.2'})]),
        ('slack_send_message', 1, rec('slack'),
         [P(200, {'ok': False, 'error': 'token_revoked'})]),
        ('slack_search_messages', 0, rec('slack'),
         [P(200, {'ok': False, 'error': 'not_allowed_token_type'})]),
        ('slack_search_messages', 2, rec('slack', expires_at=1000),
         [P(200, {'ok': True, 'messages': {'matches': []}})]),
        ('slack_list_channels', 0, rec('slack'),
         [P(429, {'ok': False, 'error': 'ratelimited'},
            [('Retry-After', '30')])]),
        ('slack_list_channels', 0, rec('slack'),
         [P(429, '', [('Retry-After', 'Wed, 21 Oct 2026 07:28:00 GMT')])]),
        ('notion_get_page', 0, rec('notion'), [P(200, NOTION_PAGE)]),
        ('notion_search', 0, rec('notion'),
         [P(401, {'object': 'error', 'status': 401, 'code': 'unauthorized',
                  'message': 'API token is invalid.'}),
          P(401, {'object': 'error', 'status': 401})]),
        ('notion_create_page', 0, rec('notion'),
         [P(400, {'object': 'error', 'status': 400,
                  'code': 'validation_error', 'message': 'body failed'})]),
        ('notion_search', 0, rec('notion'),
         [P(529, {'object': 'error', 'status': 529, 'code': 'overloaded'})]),
        ('notion_search', 0, rec('notion'),
         [P(429, {'object': 'error', 'code': 'rate_limited'},
            [('retry-after', '2')])]),
        ('github_list_repos', 0, rec('github'), [P(200, [{'id': 1}])]),
        ('github_search_issues', 0, rec('github'), [P(200, GITHUB_ISSUES)]),
        ('github_search_issues', 0, rec('github'),
         [P(403, {'message': 'API rate limit exceeded'},
            [('x-ratelimit-remaining', '0'),
             ('x-ratelimit-reset', '1764205200')])]),
        ('github_search_issues', 0, rec('github'),
         [P(422, {'message': 'Validation Failed', 'errors': []})]),
        ('github_list_repos', 0, rec('github', refresh_token=None),
         [P(401, {'message': 'Bad credentials'})]),
        ('openweather_current', 0, '-', [P(200, WEATHER)]),
        ('openweather_current', 0,
         json.dumps({'type': 'api_key', 'api_key': 'AK-CANARY-$C-9'}),
         [P(401, {'cod': 401, 'message': 'Invalid API key.'})]),
        ('openweather_current', 0, '-', ['timeout']),
        ('openweather_current', 0, '-', ['connect']),
        ('openweather_current', 0, '-', ['large']),
        ('openweather_current', 0, '-', ['failed']),
        ('openweather_current', 0, '-', [P(502, '<html>bad gateway</html>')]),
        ('openweather_current', 0, '-', [P(200, 'not json \xff')]),
        ('openweather_current', 0, '-', [P(204, '')]),
        ('slack_list_channels', 0, 'raw:v1.k1.' + 'A' * 38,
         [P(200, SLACK_OK)]),
        ('slack_list_channels', 0, '-', []),
        ('slack_list_channels', 4, rec('slack'),
         [P(401, {'ok': False, 'error': 'invalid_auth'})]),
        ('slack_list_channels', 8, rec('slack'), [P(200, SLACK_OK)]),
        ('slack_list_channels', 16, rec('slack'), []),
        ('slack_list_channels', 0x300, rec('slack'), [P(200, SLACK_OK)]),
        ('github_list_repos', 0, '{"type":"oauth"}', []),
        ('github_list_repos', 0, '[1,2]', []),
        ('unknown_tool', 0, '-', []),
    ]
    for tool, flags, record, answers in cases:
        args = json.dumps(VALID_ARGS.get(tool, {}))
        c.add(tool, SEP.join(['%s %d\n%s' % (tool, flags, args), record]
                             + answers))


def mcp(status, body, headers=()):
    return provider_answer(status, body, headers)


def sse(*events, crlf=False):
    out = ''
    for e in events:
        out += e + '\n\n'
    return out.replace('\n', '\r\n') if crlf else out


INIT = {'jsonrpc': '2.0', 'id': '$ID', 'result': {
    'protocolVersion': '2025-06-18', 'capabilities': {'tools': {}},
    'serverInfo': {'name': 'kb', 'version': '1'}}}


def idfix(obj):
    return json.dumps(obj).replace('"$ID"', '$ID')


def sse_seeds():
    c = Corpus('sse')
    J = 'Content-Type: application/json'
    init = mcp(200, idfix(INIT), [('Content-Type', 'application/json'),
                                  ('Mcp-Session-Id', 'sess-1')])
    ack = '202\n\n'
    result = idfix({'jsonrpc': '2.0', 'id': '$ID', 'result': {
        'content': [{'type': 'text', 'text': 'found 3'}], 'isError': False}})
    ES = ('Content-Type', 'text/event-stream')
    calls = [
        ('json', [init, ack, mcp(200, result, [('Content-Type',
                                                 'application/json')])]),
        ('sse', [init, ack, mcp(200, sse(
            ': keep-alive',
            'event: message\nid: 7\nretry: 100\ndata: ' + idfix(
                {'jsonrpc': '2.0', 'method': 'notifications/progress',
                 'params': {'progress': 1}}),
            'event: other\ndata: {"x":1}',
            'data: ' + result), [ES])]),
        ('sse-crlf', [init, ack, mcp(200, sse('data: ' + result, crlf=True),
                                     [ES])]),
        ('sse-cr', [init, ack, mcp(200, ('data: ' + result + '\r\r'), [ES])]),
        ('sse-multiline', [init, ack, mcp(200, sse(
            'data: {"jsonrpc":"2.0",\ndata:"id":$ID,\ndata: "result":{}}'),
            [ES])]),
        ('sse-no-final-blank', [init, ack, mcp(200, 'data: ' + result,
                                               [ES])]),
        ('batch', [init, ack, mcp(200, '[' + idfix(
            {'jsonrpc': '2.0', 'method': 'ping', 'id': 99}) + ',' + result
            + ']', [('Content-Type', 'application/json')])]),
        ('rpc-error', [init, ack, mcp(200, idfix(
            {'jsonrpc': '2.0', 'id': '$ID', 'error': {
                'code': -32602, 'message': 'Invalid params'}}),
            [('Content-Type', 'application/json')])]),
        ('session-lost', [init, ack, '404\n\n', init, ack,
                          mcp(200, result, [('Content-Type',
                                             'application/json')])]),
        ('rate-limited', [init, ack, mcp(429, '{"error":"slow down"}',
                                         [('Retry-After', '5')])]),
        ('bad-version', [mcp(200, idfix({'jsonrpc': '2.0', 'id': '$ID',
                                          'result': {'protocolVersion':
                                                     '1999-01-01'}}),
                             [('Content-Type', 'application/json')])]),
        ('bad-sid', [mcp(200, idfix(INIT), [('Content-Type',
                                             'application/json'),
                                            ('Mcp-Session-Id', 'a b')])]),
        ('stateless', [mcp(200, idfix(INIT).replace('2025-06-18',
                                                    '2025-03-26'),
                           [('Content-Type', 'application/json')]), ack,
                       mcp(200, result, [('Content-Type',
                                          'application/json')])]),
        ('500', [init, ack, mcp(500, '<html>oops</html>')]),
        ('not-json', [init, ack, mcp(200, 'hello', [('Content-Type',
                                                      'text/plain')])]),
        ('wrong-id', [init, ack, mcp(200, result.replace('$ID', '123456'),
                                     [('Content-Type',
                                       'application/json')])]),
        ('timeout', [init, ack, 'timeout']),
        ('transport', ['connect']),
    ]
    for label, answers in calls:
        c.add('call-' + label, SEP.join(['call docs_search\n{"q":"x"}']
                                        + answers))
    c.add('call-abort', SEP.join(['call docs_search 2\n{}', init, ack,
                                  mcp(200, result, [ES])]))
    c.add('call2', SEP.join(['call2 docs_search\n{}', init, ack,
                             mcp(200, result, [ES]), mcp(200, result, [ES])]))
    c.add('call2-lost', SEP.join(['call2 docs_fetch\n{}', init, ack,
                                  mcp(200, result, [ES]), '404\n\n', init,
                                  ack, mcp(200, result, [ES])]))
    c.add('both', SEP.join(['both docs_search 0x50000\n{}', init, init, ack,
                            ack, mcp(200, result, [ES]),
                            mcp(200, result, [ES])]))
    tools = idfix({'jsonrpc': '2.0', 'id': '$ID', 'result': {
        'tools': [{'name': 'search', 'description': 'Search',
                   'inputSchema': {'type': 'object', 'properties': {
                       'q': {'type': 'string'}}}},
                  {'name': 'fetch', 'title': 'Fetch'}, {'name': ''},
                  {'description': 'no name'}],
        'nextCursor': 'page-2'}})
    last = idfix({'jsonrpc': '2.0', 'id': '$ID', 'result': {
        'tools': [{'name': 'last'}]}})
    c.add('list', SEP.join(['list x 0\n', init, ack, mcp(200, tools, [ES]),
                            mcp(200, last, [ES])]))
    c.add('list-3', SEP.join(['list x 0x30100\n', init, init, init, ack,
                              ack, ack, mcp(200, tools, [ES]),
                              mcp(200, last, [ES]), '500\n\n',
                              mcp(200, last, [ES])]))
    c.add('list-abort', SEP.join(['list x 0x104\n', init, init, 'timeout']))


def resp(x):
    if x is None:
        return '$-1\r\n'
    if isinstance(x, int):
        return ':%d\r\n' % x
    if isinstance(x, list):
        return '*%d\r\n' % len(x) + ''.join(resp(e) for e in x)
    if isinstance(x, tuple):           # ('+', 'OK') or ('-', 'ERR x')
        return x[0] + x[1] + '\r\n'
    b = x.encode() if isinstance(x, str) else x
    return '$%d\r\n' % len(b) + b.decode('latin-1') + '\r\n'


def redis_seeds():
    c = Corpus('redis')
    kb = json.dumps({'connector_slug': 'remote_mcp',
                     'mcp_url': 'https://mcp.kb.test/mcp',
                     'oauth_scopes': ['a', 'b'], 'require_auth': False})
    ow = json.dumps({'connector_slug': 'openweather',
                     'api_key': seal('sk-live', aad('p1', 'ow', 'api_key')),
                     'allow_end_user_auth': False})
    secret = seal('s', aad('p1', 'sl2', 'oauth_client_secret'))
    sl = json.dumps({'connector_slug': 'slack', 'oauth_client_id': 'c',
                     'oauth_client_secret': secret})
    conns = resp(['kb', kb, 'ow', ow, 'sl2', sl])
    odd = resp(['kb', kb, 'lonely'])
    weird = resp(['kb', 7, ['x'], 'gone', json.dumps({'connector_slug':
                                                       'gone'}),
                  'bad', '{"connector_slug":', 'arr', '[]',
                  'scopes', json.dumps({'connector_slug': 'remote_mcp',
                                        'oauth_scopes': [1, None, 'x']})])
    tok = token('slack', {'type': 'oauth', 'access_token': 'xoxp-1',
                          'refresh_token': 'r', 'expires_at': 0})
    tok_old = token('slack', {'type': 'oauth', 'access_token': 'xoxp-1',
                              'expires_at': 4102444800}, kid='k0')
    tok_key = token('openweather', {'type': 'api_key', 'api_key': 'u-key'})
    assign = resp('["slack","kb"]')
    cases = [
        ('list', conns), ('list', odd), ('list', weird), ('list', resp([])),
        ('list', resp(None)), ('list', resp(('-', 'ERR wrong type'))),
        ('list', resp(3)), ('list', ''),
        ('get', conns), ('get', resp(['kb', '{}'])),
        ('tools', conns + assign), ('tools', conns + resp('[1,{"a":2}]')),
        ('tools', conns + resp('not json')), ('tools', conns + resp(None)),
        ('tools', conns + resp(('-', 'ERR'))), ('tools', conns + resp(5)),
        ('call', conns + assign + resp(tok)),
        ('call', conns + resp(None) + resp(tok_old) + resp(1)),
        ('call', conns + resp(None) + resp('garbage')),
        ('call', conns + resp(None) + resp(None)),
        ('call', conns + resp(None) + resp(('-', 'LOADING'))),
        ('callmcp', conns + resp(None)),
        ('callkey', conns + resp(None) + resp(tok_key)),
        ('callkey', resp(['openweather', ow]) + resp(None) + resp(None)),
        ('enable', conns + resp(1)), ('enable', conns + resp(0)),
        ('enable', conns + resp(('+', 'OK'))),
        ('patch', conns + resp(0)), ('patch', resp([]) + resp(1)),
        ('delete', conns + resp([1, ['u1', tok, 'u2', 'x']])),
        ('delete', conns + resp([0, []])), ('delete', conns + resp([1, 2])),
        ('delete', conns + resp([1])), ('delete', conns + resp(None)),
        ('assign', conns + resp(None) + resp(1)),
        ('assign', conns + resp(None) + resp(None)),
        ('agents', conns + assign), ('agents', conns + resp(None)),
        ('list 0x10000', '*2\r\n*1\r\n*1\r\n$1\r\na\r\n:1\r\n'),
    ]
    for mode, data in cases:
        c.add(mode.split()[0], mode + SEP + data)


def token_seeds():
    c = Corpus('token')
    P = provider_answer
    J = [('Content-Type', 'application/json')]
    F = [('Content-Type', 'application/x-www-form-urlencoded')]
    slack_code = {'ok': True, 'app_id': 'A1', 'token_type': 'bot',
                  'access_token': 'xoxb-1', 'scope': 'commands',
                  'team': {'id': 'T1', 'name': 'Acme'},
                  'authed_user': {'id': 'U2',
                                  'scope': 'chat:write,search:read',
                                  'access_token': 'xoxp-1',
                                  'token_type': 'user',
                                  'refresh_token': 'xoxe-1',
                                  'expires_in': 43200}}
    slack_refresh = {'ok': True, 'access_token': 'xoxe.xoxp-2',
                     'refresh_token': 'xoxe-2', 'expires_in': 43200,
                     'token_type': 'user', 'scope': 'chat:write',
                     'user_id': 'U2'}
    notion = {'access_token': 'secret_abc', 'token_type': 'bearer',
              'refresh_token': 'nr-1', 'bot_id': 'b1', 'workspace_id': 'w1',
              'owner': {'type': 'user', 'user': {'id': 'u1'}}}
    github = {'access_token': 'ghu_1', 'expires_in': 28800,
              'refresh_token': 'ghr_1', 'refresh_token_expires_in': 15811200,
              'scope': '', 'token_type': 'bearer'}
    cases = [
        ('slack 0', [P(200, slack_code, J)]),
        ('slack 1', [P(200, slack_refresh, J)]),
        ('slack 0', [P(200, {'ok': False, 'error': 'invalid_code'}, J)]),
        ('slack 1', [P(200, {'ok': False, 'error': 'invalid_refresh_token'},
                       J)]),
        ('slack 1', [P(200, {'ok': False, 'error': 'x y!'}, J)]),
        ('slack 0', [P(200, {'ok': True, 'authed_user': {}}, J)]),
        ('notion 0', [P(200, notion, J)]),
        ('notion 1', [P(400, {'error': 'invalid_grant',
                              'error_description': 'Invalid code.'}, J)]),
        ('notion 1', [P(429, {'error': 'rate_limited'},
                        J + [('Retry-After', '3')])]),
        ('notion 0', [P(500, '<html>oops</html>')]),
        ('github 0', [P(200, 'access_token=gho_16C7e42F292c6912E7710c83834'
                        '7Ae178B4a&scope=repo%2Cgist&token_type=bearer', F)]),
        ('github 0', [P(200, 'error=bad_verification_code&error_description='
                        'The+code+passed+is+incorrect+or+expired.&error_uri='
                        'https%3A%2F%2Fdocs.github.com', F)]),
        ('github 1', [P(200, github, J)]),
        ('github 1', [P(200, {'error': 'bad_refresh_token'}, J)]),
        ('github 1', [P(200, dict(github, expires_in='3600'), J)]),
        ('github 1', [P(200, dict(github, expires_in=1.5e3), J)]),
        ('github 1', [P(200, dict(github, expires_in=-5), J)]),
        ('github 0', [P(200, 'access_token=a%2&x=%zz&=&&scope=+', F)]),
        ('github 0', [P(200, '', F)]),
        ('slack 1', ['timeout']),
        ('notion 0', ['connect']),
        ('github 1', ['failed']),
    ]
    for line, answers in cases:
        c.add(line.replace(' ', '-'), SEP.join([line] + answers))


def origin_seeds():
    c = Corpus('origin')
    for u in ['https://app.example.com/done?x=1#f', 'https://app.example.com',
              'HTTPS://APP.EXAMPLE.COM/', 'https://app.example.com.evil.test/',
              'https://app.example.com@evil.test/',
              'https://app.example.com:443/',
              'https://app.example.com\\@evil.test',
              'https://app.example.com%2f@x',
              'http://localhost:3000/cb', 'http://localhost:30001/',
              'https://mcp.corp.example:8443/mcp', 'https://[2001:db8::1]/x',
              'https://app.example.com/..//evil.test', 'javascript:alert(1)',
              '//evil.test', 'https://app.example.com?next=https://evil.test',
              'https://app.example.com#@evil.test', 'https://a:b']:
        c.add('url', u)
    c.add('origin', 'https://shop.example' + SEP + 'https://shop.example/ok')
    c.add('origin-port', 'http://127.0.0.1:8080' + SEP
          + 'http://127.0.0.1:8080?x')
    c.add('origin-query', 'https://a.example?' + SEP + 'https://a.example?/x')


def jsonrpc_seeds():
    c = Corpus('jsonrpc')
    j = lambda o: json.dumps(o, separators=(',', ':'))
    init = {'jsonrpc': '2.0', 'id': 1, 'method': 'initialize',
            'params': {'protocolVersion': '2025-11-25', 'capabilities': {},
                       'clientInfo': {'name': 'c', 'version': '1'}}}
    c.add('initialize', j(init))
    c.add('call', j({'jsonrpc': '2.0', 'id': 'a-1', 'method': 'tools/call',
                     'params': {'name': 'github_list_repos',
                                'arguments': {'q': 'x'}}}))
    c.add('ping-array-params', j({'jsonrpc': '2.0', 'id': 0,
                                  'method': 'ping', 'params': []}))
    c.add('notification', j({'jsonrpc': '2.0',
                             'method': 'notifications/initialized'}))
    c.add('cancelled', j({'jsonrpc': '2.0', 'method': 'notifications/cancelled',
                          'params': {'requestId': 7, 'reason': 'r'}}))
    c.add('result', j({'jsonrpc': '2.0', 'id': 99, 'result': {}}))
    c.add('error', j({'jsonrpc': '2.0', 'id': 3,
                      'error': {'code': -32601, 'message': 'no',
                                'data': {'x': 1}}}))
    c.add('error-null-id', j({'jsonrpc': '2.0', 'id': None,
                              'error': {'code': -32700, 'message': 'p'}}))
    c.add('batch', j([init, {'jsonrpc': '2.0', 'id': 2, 'result': {}}]))
    c.add('bad-version', j({'jsonrpc': '1.0', 'id': 1, 'method': 'ping'}))
    c.add('bad-id-real', '{"jsonrpc":"2.0","id":1.5,"method":"ping"}')
    c.add('bad-id-null-request', '{"jsonrpc":"2.0","id":null,"method":"x"}')
    c.add('bad-method', '{"jsonrpc":"2.0","id":1,"method":5}')
    c.add('bad-params', '{"jsonrpc":"2.0","id":1,"method":"m","params":"s"}')
    c.add('bad-both', '{"jsonrpc":"2.0","id":1,"result":1,"error":{}}')
    c.add('bad-no-id', '{"jsonrpc":"2.0","result":{}}')
    c.add('bad-error', '{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}')
    c.add('empty', '{"jsonrpc":"2.0"}')
    c.add('version', '"2025-06-18"')
    c.add('unicode', j({'jsonrpc': '2.0', 'id': '\u00e9\u4e2d',
                        'method': '\u00e9' * 300}))
    c.add('not-json', b'{"jsonrpc":"2.0","method":"\xc3\x28')
    c.add('dup', '{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}')


def main():
    schema_seeds()
    open_seeds()
    body_seeds()
    catalog_seeds()
    provider_seeds()
    sse_seeds()
    redis_seeds()
    token_seeds()
    origin_seeds()
    jsonrpc_seeds()
    for d in sorted(os.listdir(OUT)):
        print('%-9s %3d seeds' % (d, len(os.listdir(os.path.join(OUT, d)))))


if __name__ == '__main__':
    main()
