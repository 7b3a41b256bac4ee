# Consul ACL policy for a Portcullis-fronted service named `payments`.
#
#   consul acl policy create -name portcullis-payments -rules @acl-portcullis-payments.hcl
#   consul acl token create -description "payments (Portcullis)" -policy-name portcullis-payments
#
# On Nomad with workload identity (`nomad setup consul`) you do not create this token by hand:
# the service identity token Nomad obtains for a service named `payments` grants the same
# service:write. This file is for hosts without Nomad and for reviewing what is needed.
#
# What Portcullis does with the token (Connect-native variant only):
# - GET  /v1/agent/connect/ca/leaf/payments   service:write on `payments`
# - GET  /v1/agent/connect/ca/roots           no ACL needed
# - POST /v1/agent/connect/authorize          service:write on the target (`payments`);
#                                             intentions read on it
# - registering the service and its checks    service:write on `payments` (done by Nomad,
#                                             or by the agent from services/payments.hcl)

service "payments" {
  policy     = "write"
  intentions = "read"
}

# Health checks and Connect require the node the service runs on to be readable.
node_prefix "" {
  policy = "read"
}

# Resolving other services (catalog and health queries) is harmless and often needed by the
# app; drop it if the fronted service never discovers others through this token.
service_prefix "" {
  policy = "read"
}
