package Astralform::Seal;

# Seals and opens blobs the way the gateway does (src/ngx_astralform_crypto.c),
# written independently in Perl so the tests check the format from outside:
#
#     v1.<kid>.<base64url(nonce[12] | ciphertext | tag[16])>
#     GCM additional data = "v1.<kid>." . "astralform|<project>|<connector>|<what>|<user>"
#
#   seal_token($key_hex, $kid, $project, $connector, $user, \%record)
#   open_blob($key_hex, $aad, $blob)  -> plaintext or undef

use strict;
use warnings;

use Crypt::AuthEnc::GCM qw(gcm_encrypt_authenticate gcm_decrypt_verify);
use Crypt::PRNG qw(random_bytes);
use JSON::PP ();
use MIME::Base64 qw(encode_base64url decode_base64url);
use Exporter 'import';

our @EXPORT = qw(seal seal_token open_blob token_aad);

sub token_aad {
    my ($project, $connector, $user) = @_;
    return "astralform|$project|$connector|token|$user";
}

sub seal {
    my ($key_hex, $kid, $aad, $plain) = @_;
    my $key = pack('H*', $key_hex);
    my $nonce = random_bytes(12);
    my $head = "v1.$kid.";
    my ($ct, $tag) = gcm_encrypt_authenticate('AES', $key, $nonce,
                                              $head . $aad, $plain);
    return $head . encode_base64url($nonce . $ct . $tag);
}

sub seal_token {
    my ($key_hex, $kid, $project, $connector, $user, $record) = @_;
    my $json = JSON::PP->new->canonical->encode($record);
    return seal($key_hex, $kid, token_aad($project, $connector, $user), $json);
}

sub open_blob {
    my ($key_hex, $aad, $blob) = @_;
    my ($v, $kid, $b64) = split /\./, $blob, 3;
    return undef unless defined $b64 && $v eq 'v1';
    my $raw = decode_base64url($b64);
    return undef if length($raw) < 28;
    my $nonce = substr($raw, 0, 12);
    my $tag = substr($raw, -16);
    my $ct = substr($raw, 12, length($raw) - 28);
    return gcm_decrypt_verify('AES', pack('H*', $key_hex), $nonce,
                              "v1.$kid." . $aad, $ct, $tag);
}

1;
