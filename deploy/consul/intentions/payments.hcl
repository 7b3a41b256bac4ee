# Service intentions for `payments`: who may connect to it.
#
#   consul config write intentions/payments.hcl
#
# How they apply depends on the source Portcullis uses:
# - Connect-native (Consul source, provisional): the authorization Consul answers at
#   POST /v1/agent/connect/authorize follows these rules. Only L4 intentions (allow/deny)
#   count there; an L7 rule (`Permissions`) answers "deny" to that endpoint.
# - Vault source: Consul intentions are not consulted. Portcullis authorizes with its own
#   `[auth.allow]` list; keep this file and that list saying the same thing.
# - Envoy sidecars of other services dialling payments check intentions on their own side too.

Kind = "service-intentions"
Name = "payments"

Sources = [
  {
    Name        = "frontend"
    Action      = "allow"
    Description = "web tier calls the payments API"
  },
  {
    Name        = "billing-worker"
    Action      = "allow"
    Description = "nightly settlement batch"
  },
  # Everything else is refused, whatever the ACL default intention policy says.
  {
    Name   = "*"
    Action = "deny"
  },
]
