# Agents are who they say (DESIGN 10): a key bound by astralform_agent is
# that agent on every row (tool list, tool calls, the connections list and
# the single-connection rows authorize / PUT / DELETE), with or without
# X-Astralform-Agent; naming another agent is 403 agent_mismatch. The
# project-wide agent_key_file keys stay trusted backends that name any
# agent, or none (and then see every tool); a named agent's assignment
# holds on the single-connection rows for them too. $astralform_agent logs
# the resolved agent.

use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Astralform::Test qw(:all);
use Astralform::OAuth;

$ENV{TEST_NGINX_MOCK_PORT} or plan skip_all => 'no mock providers';

my $BOT_A = 'bot-a-bound-key-7f3e9c1d5b2a4068';
my $BOT_B = 'bot-b-bound-key-2c8d4e6f0a1b3957';
my $dir = "$ENV{TEST_NGINX_REPO}/t/tmp/082";

my $cfg = oauth_config(prefix => 't082:', dir => 't/tmp/082', extra => <<"_EOC_");
    astralform_connector p1 openweather;
    astralform_agent p1 bot-a key_file=$dir/bot-a.keys;
    astralform_agent p1 bot-b key_file=$dir/bot-b.keys;
    log_format agents 'agent=\$astralform_agent uri=\$uri';
    access_log logs/agents.log agents;
_EOC_
spew("$dir/bot-a.keys", "$BOT_A\n");
spew("$dir/bot-b.keys", "$BOT_B\n");
remember_secret($BOT_A, $BOT_B);

start_nginx(http_config => $cfg->{http_config}, config => $cfg->{config})
    or BAIL_OUT("nginx: $Astralform::Test::StartError");

redis_cmd('EVAL', "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  . "redis.call('DEL', k) end", 0, 't082:*');

# bot-a may use slack only; bot-b has no assignment
my ($st, $h, $res) = admin_api('PUT', '/v1/projects/p1/agents/bot-a/connectors',
                               { connectors => ['slack'] });
is($st, 200, 'bot-a is assigned slack') or diag explain $res;

sub tool_connectors {
    my ($res) = @_;
    my %c = map { $_->{connector} => 1 } @{ $res->{tools} || [] };
    return join ',', sort keys %c;
}


# --- a bound key is its agent, with or without the header -------------------

($st, $h, $res) = api('GET', '/v1/projects/p1/tools', undef, key => $BOT_A);
is($st, 200, 'bound key, no header: tool list');
is(tool_connectors($res), 'slack',
   'bound key, no header: only the agent\'s assigned tools');

($st, $h, $res) = api('GET', '/v1/projects/p1/tools', undef, key => $BOT_A,
                      agent => 'bot-a');
is(tool_connectors($res), 'slack', 'bound key naming itself: its tools');

for my $row (['GET', '/v1/projects/p1/tools', undef],
             ['POST', '/v1/projects/p1/tools/call',
              { name => 'slack_list_channels', arguments => {} }],
             ['GET', '/v1/projects/p1/users/u1/connections', undef],
             ['POST', '/v1/projects/p1/users/u1/connections/slack/authorize',
              {}],
             ['PUT', '/v1/projects/p1/users/u1/connections/openweather',
              { api_key => 'owm-user-key-1' }],
             ['DELETE', '/v1/projects/p1/users/u1/connections/slack', undef])
{
    my ($m, $p, $b) = @$row;
    ($st, $h, $res) = api($m, $p, $b, key => $BOT_A, agent => 'bot-b',
                          user => 'u1');
    is($st, 403, "bound key naming another agent: $m $p: 403");
    is(ref $res && $res->{error}, 'agent_mismatch',
       "$m $p: agent_mismatch");
}
like($res->{message}, qr/"bot-a"/, 'agent_mismatch names the key\'s agent');

($st, $h, $res) = api('POST', '/v1/projects/p1/tools/call',
                      { name => 'notion_search', arguments => {} },
                      key => $BOT_A, user => 'u1');
is($st, 403, 'bound key, no header: an unassigned tool is refused');
is($res->{error}, 'tool_not_assigned', 'tool_not_assigned');

($st, $h, $res) = api('GET', '/v1/projects/p1/users/u1/connections', undef,
                      key => $BOT_A);
is($st, 200, 'bound key: connections list');
is(join(',', map { $_->{connector} } @{ $res->{connections} }), 'slack',
   'bound key: the list has the assigned connectors only');


# --- the single-connection rows honour the assignment -----------------------

for my $row (['POST', '/v1/projects/p1/users/u1/connections/notion/authorize',
              {}],
             ['PUT', '/v1/projects/p1/users/u1/connections/openweather',
              { api_key => 'owm-user-key-1' }],
             ['DELETE', '/v1/projects/p1/users/u1/connections/notion', undef])
{
    my ($m, $p, $b) = @$row;
    ($st, $h, $res) = api($m, $p, $b, key => $BOT_A);
    is($st, 403, "bound key: $m $p (not assigned): 403");
    is(ref $res && $res->{error}, 'connector_not_assigned',
       "$m $p: connector_not_assigned");

    # a trusted backend naming the agent gets the same answer
    ($st, $h, $res) = api($m, $p, $b, agent => 'bot-a');
    is($st, 403, "trusted key naming bot-a: $m $p: 403");
    is(ref $res && $res->{error}, 'connector_not_assigned',
       "trusted key naming bot-a: $m $p: connector_not_assigned");
}

($st, $h, $res) = api('POST',
                      '/v1/projects/p1/users/u1/connections/slack/authorize',
                      {}, key => $BOT_A);
is($st, 200, 'bound key: authorize an assigned connector');
like($res->{authorization_url} // '', qr{/v1/connectors/oauth/authorize\?session=},
     'an authorization_url');

# bot-b: no assignment, every connector
($st, $h, $res) = api('PUT', '/v1/projects/p1/users/u2/connections/openweather',
                      { api_key => 'owm-user-key-2' }, key => $BOT_B);
is($st, 200, 'bound key without an assignment: PUT its user key');
($st, $h, $res) = api('DELETE', '/v1/projects/p1/users/u2/connections/openweather',
                      undef, key => $BOT_B);
is($st, 200, 'bound key without an assignment: DELETE');
is($res->{disconnected}, JSON::PP::true, 'the key was removed');


# --- trusted backends: any agent, or none (every tool) ----------------------

($st, $h, $res) = api('GET', '/v1/projects/p1/tools', undef);
is(tool_connectors($res), 'github,notion,openweather,slack',
   'trusted key, no header: every tool');
($st, $h, $res) = api('GET', '/v1/projects/p1/tools', undef, agent => 'bot-a');
is(tool_connectors($res), 'slack', 'trusted key naming bot-a: bot-a\'s tools');
($st, $h, $res) = api('POST',
                      '/v1/projects/p1/users/u1/connections/notion/authorize',
                      {});
is($st, 200, 'trusted key, no header: authorize any connector');

# an admin key is trusted too
($st, $h, $res) = admin_api('GET', '/v1/projects/p1/tools', undef,
                            agent => 'bot-a');
is(tool_connectors($res), 'slack', 'admin key naming bot-a: bot-a\'s tools');

# a bound key is a key of its project only
($st, $h, $res) = api('GET', '/v1/projects/p2/tools', undef, key => $BOT_A);
is($st, 404, 'bound key on another project: 404');

# a bound key is an agent key, not an admin one
($st, $h, $res) = api('GET', '/v1/projects/p1/connectors', undef, key => $BOT_A);
is($st, 403, 'bound key on an admin row: 403');
is($res->{error}, 'admin_required', 'admin_required');


# --- $astralform_agent is the resolved agent ---------------------------------

my $log = do {
    local $/;
    open my $fh, '<', "$Astralform::Test::ServRoot/logs/agents.log" or die $!;
    <$fh>;
};
like($log, qr{^agent=bot-a uri=/v1/projects/p1/users/u1/connections$}m,
     '$astralform_agent: the bound agent, without a header');
like($log, qr{^agent=bot-b uri=/v1/projects/p1/users/u2/connections/openweather$}m,
     '$astralform_agent: bot-b\'s key');

secrets_from_mock();
stop_nginx();
scan_logs('owm-user-key-1', 'owm-user-key-2');
done_testing();
