#!/bin/sh
# Run by the image's entrypoint at start (after the templates are rendered): turns the
# container's settings into nginx configuration, refusing bad values with one clear
# message each, so a typo stops the container instead of serving something unintended.
#   TLS=on|off            on: HTTPS on 8443 (certificate and key as secrets), 8080 redirects
#   RATE_LIMIT=on|off     off: no rate limits (load tests from one address)
#   TRUSTED_PROXIES="…"   addresses/CIDRs whose X-Forwarded-For/-Proto are believed
#   PUBLIC_HTTPS_PORT=443 where clients reach HTTPS, for the redirect from HTTP
#   PUBLIC_HOST=localhost the host name clients use, never empty: the redirect names it,
#                         and any other host than it, localhost or 127.0.0.1 gets a 421
set -eu

out=/etc/nginx/conf.d/settings.conf
problems=""
problem() { problems="${problems}  - $1
"; }

tls="${TLS:-off}"
rate_limit="${RATE_LIMIT:-on}"
case "$tls" in on | off) ;; *) problem "TLS must be on or off, got '$tls'" ;; esac
case "$rate_limit" in on | off) ;; *) problem "RATE_LIMIT must be on or off, got '$rate_limit'" ;; esac
port="${PUBLIC_HTTPS_PORT:-443}"
case "$port" in
  '' | *[!0-9]*) problem "PUBLIC_HTTPS_PORT must be a port number, got '$port'" ;;
  *) [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || problem "PUBLIC_HTTPS_PORT must be 1-65535, got '$port'" ;;
esac
# Host names are case-insensitive; nginx's $host is lower case. Empty is refused, not
# taken as localhost: production passes it empty when it is not set
# (docker-compose.prod.yml), and would otherwise answer every real request 421.
public_host=$(printf '%s' "${PUBLIC_HOST:-}" | tr '[:upper:]' '[:lower:]')
label='[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?'
if [ -z "$public_host" ]; then
  problem "PUBLIC_HOST is empty: set it to the host name clients use, e.g. PUBLIC_HOST=example.com in .env (bash infra/init-secrets.sh example.com writes it; PUBLIC_HOST=localhost to try it on this machine)"
elif ! printf '%s\n' "$public_host" | grep -Eqx "($label\.)*$label" || [ ${#public_host} -gt 253 ]; then
  problem "PUBLIC_HOST must be a host name such as example.com (letters, digits, '-' and '.'), got '${PUBLIC_HOST:-}'"
fi
proxies=$(printf '%s' "${TRUSTED_PROXIES:-}" | tr ',' ' ')
# No file name expansion of the entries ("*" stays "*").
set -f
ipv4='([0-9]{1,3}\.){3}[0-9]{1,3}(/([0-9]|[12][0-9]|3[0-2]))?'
ipv6='[0-9a-fA-F]*:[0-9a-fA-F:.]*(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?'
for proxy in $proxies; do
  printf '%s\n' "$proxy" | grep -Eqx "$ipv4|$ipv6" ||
    problem "TRUSTED_PROXIES: '$proxy' is not an IPv4 or IPv6 address or CIDR"
done
if [ "$tls" = on ]; then
  for secret in tls_certificate tls_key; do
    [ -r "/run/secrets/$secret" ] ||
      problem "TLS=on needs the secret $secret (/run/secrets/$secret is missing or unreadable)"
  done
fi
if [ -n "$problems" ]; then
  printf 'Invalid configuration for frontend:\n%s' "$problems" >&2
  exit 1
fi

{
  echo "# Written at start by /docker-entrypoint.d/30-site-settings.sh; do not edit."
  if [ "$rate_limit" = on ]; then
    echo 'map $remote_addr $rate_limit_key { default $binary_remote_addr; }'
  else
    echo 'map $remote_addr $rate_limit_key { default ""; }'
  fi
  # The one origin the redirects to HTTPS name: never the request's Host.
  if [ "$port" = 443 ]; then
    echo "map \$host \$public_https_origin { default \"https://$public_host\"; }"
  else
    echo "map \$host \$public_https_origin { default \"https://$public_host:$port\"; }"
  fi
  # The hosts this edge serves (snippets/served-hosts.conf refuses the others): the public
  # one, and the loopback names of the quick start and the container's own health check.
  echo 'map $host $served_host {'
  echo "    default 0;"
  served=""
  for name in localhost 127.0.0.1 "$public_host"; do
    case " $served " in *" $name "*) continue ;; esac
    served="$served $name"
    echo "    $name 1;"
  done
  echo "}"
  if [ -n "$proxies" ]; then
    # The client address is the last one these proxies added to X-Forwarded-For, and
    # their X-Forwarded-Proto is passed on; from anyone else both are ignored.
    for proxy in $proxies; do echo "set_real_ip_from $proxy;"; done
    echo "real_ip_header X-Forwarded-For;"
    echo "real_ip_recursive on;"
    echo 'geo $realip_remote_addr $from_trusted_proxy {'
    echo "    default 0;"
    for proxy in $proxies; do echo "    $proxy 1;"; done
    echo "}"
    echo 'map "$from_trusted_proxy:$http_x_forwarded_proto" $forwarded_proto {'
    echo '    "~^1:(?<proto>https?)$" $proto;'
    echo '    default $scheme;'
    echo "}"
  else
    echo 'map $scheme $forwarded_proto { default $scheme; }'
  fi
  if [ "$tls" = on ]; then
    echo "include /etc/nginx/site/https.conf;"
  else
    echo "include /etc/nginx/site/http.conf;"
  fi
} > "$out"
echo "$0: TLS=$tls RATE_LIMIT=$rate_limit PUBLIC_HOST=$public_host TRUSTED_PROXIES='${proxies}'"
