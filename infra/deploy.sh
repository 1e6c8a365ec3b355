#!/usr/bin/env bash
# Builds the functions for Lambda (arm64) and deploys the stack with SAM. Needs AWS credentials.
#   infra/deploy.sh            sam build + sam deploy (asks before applying the change set)
#   infra/deploy.sh --build    sam build only
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rust
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/infra/requirements-deploy.txt"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
# Loopback webhook endpoints are for the local stack only: in Lambda they would reach the Runtime API.
if grep -q 'AllowLoopbackEndpoints=\\\?"\?true' infra/samconfig.toml || [[ "$*" == *AllowLoopbackEndpoints=true* ]]; then
  log "refusing to deploy with AllowLoopbackEndpoints=true (local stack only)"
  exit 1
fi
sam validate --lint --config-file infra/samconfig.toml
sam build --config-file infra/samconfig.toml
[[ "${1:-}" == "--build" ]] && exit 0
sam deploy --config-file infra/samconfig.toml
cat <<MSG
Deployed. Now set the real Stripe endpoint secret(s):
  aws secretsmanager put-secret-value --secret-id <StripeWebhookSecretArn output> \\
    --secret-string '{"endpoint_secrets":["whsec_..."]}'
and point the Stripe webhook endpoint at the StripeWebhookUrl output.
MSG
