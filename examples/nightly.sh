#!/bin/sh
# A nightly regression run of one trial from cron or a systemd timer (trialrunner-nightly.timer).
# The machine may be fresh each night: history and earlier results come down from S3 before the
# run and go back up after it, whatever the run's outcome; the script exits with trialrunner's
# exit code (0 passed, 1 a threshold broke, 3 infrastructure, 4 partial results).
#
#   TRIAL, ENVIRONMENT   the trial and environment files
#   RESULTS              s3://bucket/prefix where results and history live between runs
#   WORKDIR              where results are kept while the run lasts (default: a fresh directory)
#   TRIALRUNNER_WEBHOOK_URL, TRIALRUNNER_REPORT_URL  (optional) told when the gate fails
# AWS credentials come from the usual chain (an instance role, AWS_PROFILE): give them the
# policy `trialrunner iam-policy "$TRIAL" --env "$ENVIRONMENT"` prints, plus S3 on $RESULTS.
set -eu

: "${TRIAL:?set TRIAL}" "${ENVIRONMENT:?set ENVIRONMENT}" "${RESULTS:?set RESULTS}"
WORKDIR="${WORKDIR:-$(mktemp -d)}"
cd "$WORKDIR"

trialrunner validate "$TRIAL" --env "$ENVIRONMENT"
aws s3 sync "$RESULTS/" results/ --only-show-errors

out="results/nightly-$(date -u +%Y%m%dT%H%M%SZ)"
code=0
trialrunner run "$TRIAL" --env "$ENVIRONMENT" --out "$out" --yes --junit "$out.junit.xml" --history results/history.jsonl || code=$?

aws s3 sync results/ "$RESULTS/" --only-show-errors || code=3
exit "$code"
