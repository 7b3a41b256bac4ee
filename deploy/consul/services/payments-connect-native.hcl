# PROVISIONAL (needs Portcullis's Consul source): `payments` registered as a Connect-native
# service, so that other services in the mesh (Connect-native or behind Envoy sidecars) dial
# Portcullis directly with Connect certificates, and Portcullis serves the leaf the local
# agent issues for `payments` (GET /v1/agent/connect/ca/leaf/payments).
#
#   consul services register services/payments-connect-native.hcl
#
# Portcullis then needs, in its environment, CONSUL_HTTP_ADDR (the local agent, e.g.
# http://127.0.0.1:8500) and CONSUL_HTTP_TOKEN (a token with acl-portcullis-payments.hcl),
# plus CONSUL_CACERT / CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY if the agent API uses TLS.

service {
  name = "payments"
  id   = "payments-portcullis"
  port = 8443
  tags = ["portcullis", "mtls", "connect-native"]

  connect {
    native = true
  }

  meta = {
    portcullis_admin_port = "9901"
  }

  checks = [
    {
      id       = "payments-portcullis-ready"
      name     = "Portcullis ready (valid Connect leaf loaded)"
      http     = "http://127.0.0.1:9901/readyz"
      interval = "5s"
      timeout  = "2s"
    },
    {
      id       = "payments-app"
      name     = "payments app listening"
      tcp      = "127.0.0.1:8080"
      interval = "10s"
      timeout  = "2s"
    },
  ]
}
