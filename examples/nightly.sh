#!/bin/sh
# A nightly regression run of one trial from cron or a systemd timer (trialrunner-nightly.timer).
# The machine may be fresh each night: the campaign writes its results to S3 as it goes (a local
# copy under $WORKDIR/results/s3/), its history as one object per run, and reads its baseline
# from there; the script exits with trialrunner's exit code (0 passed, 1 a threshold broke,
# 3 infrastructure, 4 partial results or results not all on S3). A machine lost mid-campaign:
# `trialrunner run "$TRIAL" --env "$ENVIRONMENT" --resume "$RESULTS/nightly-…"` from any other.
#
#   TRIAL, ENVIRONMENT   the trial and environment files
#   RESULTS              s3://bucket/prefix where results and history live between runs
#   WORKDIR              where results are kept while the run lasts (default: a fresh directory)
#   TRIALRUNNER_WEBHOOK_URL, TRIALRUNNER_REPORT_URL  (optional) told when the gate fails
# AWS credentials come from the usual chain (an instance role, AWS_PROFILE): give them the
# policy `trialrunner iam-policy "$TRIAL" --env "$ENVIRONMENT" --results "$RESULTS"` prints.
set -eu

: "${TRIAL:?set TRIAL}" "${ENVIRONMENT:?set ENVIRONMENT}" "${RESULTS:?set RESULTS}"
WORKDIR="${WORKDIR:-$(mktemp -d)}"
cd "$WORKDIR"

trialrunner validate "$TRIAL" --env "$ENVIRONMENT"

name="nightly-$(date -u +%Y%m%dT%H%M%SZ)"
code=0
trialrunner run "$TRIAL" --env "$ENVIRONMENT" --out "$RESULTS/$name" --yes --junit "$name.junit.xml" --history "$RESULTS/history" || code=$?
exit "$code"
