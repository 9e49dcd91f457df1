#!/bin/sh
# A Jobcast worker for the "external" kind in POSIX shell with curl (docs/workers.md).
# It claims a job, counts to args.n (3 by default) reporting progress and a log line
# per step, and ends succeeded with a result. Stops early when the job is cancelled.
#   JOBCAST_URL=http://127.0.0.1:5000 WORKER_TOKEN=... examples/worker.sh [name]
# ONCE=1: exit after one job.  STEP_DELAY: seconds per step (default 0.2).
# A failed claim is said once (the server's error text), then retried after RETRY_DELAY
# seconds (default 2), doubling up to RETRY_MAX (default 60); a claim that works resets it.
set -eu
url=${JOBCAST_URL:-http://127.0.0.1:5000}
name=${1:-sh-$$}
delay=${STEP_DELAY:-0.2}
first=${RETRY_DELAY:-2} max=${RETRY_MAX:-60}
pause=$first said=
: "${WORKER_TOKEN:?set WORKER_TOKEN}"

# field NAME: the first "NAME": value (a string or a number) of the JSON on stdin.
field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1; }

# post PATH BEARER JSON: POST JSON; prints the headers and body, then the status code.
post() {
  curl -sS -X POST "$url$1" -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' -d "$3" -D - -w '\n%{http_code}'
}

# backoff WHY: say why a claim failed (unless that was said last), wait, and wait
# twice as long next time (at most $max seconds).
backoff() {
  [ "$1" = "$said" ] || echo "claim: $1 (retrying, at most every ${max}s)" >&2
  said=$1
  sleep "$pause"
  pause=$(awk -v p="$pause" -v m="$max" 'BEGIN { p *= 2; print (p > m ? m : p) }')
}

# report JSON: send one progress report with the job's token; fails once the job
# has ended or was cancelled (X-Jobcast-State), or this attempt was superseded (409).
report() {
  answer=$(post /api/progress "$token" "$1") || return 1
  code=$(printf '%s\n' "$answer" | tail -n 1)
  state=$(printf '%s\n' "$answer" | tr -d '\r' | sed -n 's/^[Xx]-[Jj]obcast-[Ss]tate: *//p')
  [ "$code" = 204 ] || { echo "report for $id: HTTP $code" >&2; return 1; }
  case $state in cancelled|failed|succeeded) [ "${2:-}" = final ] || return 1 ;; esac
}

while :; do
  answer=$(post /api/workers/claim "$WORKER_TOKEN" \
    "{\"kinds\":[\"external\"],\"worker\":\"$name\",\"wait\":20}" 2>/dev/null) ||
    { backoff "cannot reach $url (curl exit $?)"; continue; }
  code=$(printf '%s\n' "$answer" | tail -n 1)
  case $code in
    200|204) pause=$first said= ;;
    *) error=$(printf '%s\n' "$answer" | sed -n 's/.*"error": *"\([^"]*\)".*/\1/p')
       backoff "HTTP $code: ${error:-no error text}"; continue ;;
  esac
  [ "$code" = 204 ] && continue
  job=$(printf '%s\n' "$answer" | grep '"jobId"')
  id=$(printf '%s' "$job" | field jobId)
  token=$(printf '%s' "$job" | field token)
  n=$(printf '%s' "$job" | sed -n 's/.*"args": *{[^}]*"n": *\([0-9][0-9]*\).*/\1/p')
  n=${n:-3}
  echo "claimed $id"
  i=1 ok=1
  while [ "$i" -le "$n" ]; do
    report "{\"jobId\":\"$id\",\"state\":\"running\",\"current\":$i,\"total\":$n,\
\"message\":\"step $i of $n\",\"log\":[\"step $i of $n done by $name\"]}" || { ok=; break; }
    i=$((i + 1))
    sleep "$delay"
  done
  if [ -n "$ok" ]; then
    report "{\"jobId\":\"$id\",\"state\":\"succeeded\",\"result\":{\"steps\":$n,\
\"worker\":\"$name\"}}" final && echo "done $id"
  else
    echo "stopped $id"
  fi
  [ -z "${ONCE:-}" ] || exit 0
done
