# Consul agent service definition for `payments` fronted by Portcullis on a host without
# Nomad (a VM, bare metal). On Nomad the job registers the service itself; this file is the
# same registration, written by hand.
#
#   consul services register services/payments.hcl     (or drop it into /etc/consul.d/)
#
# The advertised port is Portcullis's listener (8443), never the app's: the app listens on
# 127.0.0.1:8080 and only Portcullis reaches it. Clients find `payments` in Consul and connect
# with mTLS (plaintext too, while Portcullis is in permissive mode).

service {
  name = "payments"
  id   = "payments-portcullis"
  port = 8443
  tags = ["portcullis", "mtls"]

  meta = {
    # Prometheus scrapes this port on the service's address (deploy/monitoring/prometheus.yml).
    # Portcullis's admin API must then listen on the host's private address, not only on
    # loopback: set [admin] listen accordingly and keep a token_file for the mutating endpoints.
    portcullis_admin_port = "9901"
  }

  # The Consul token registering the service needs service:write on `payments`
  # (acl-portcullis-payments.hcl). Give it with `consul services register -token=...` or the
  # agent's default token rather than in this file.

  checks = [
    {
      # Traffic gate: passing only while Portcullis serves a valid certificate.
      id       = "payments-portcullis-ready"
      name     = "Portcullis ready (valid certificate loaded)"
      http     = "http://127.0.0.1:9901/readyz"
      interval = "5s"
      timeout  = "2s"
    },
    {
      # The app behind Portcullis; a TCP connect on loopback is enough to know it listens.
      id       = "payments-app"
      name     = "payments app listening"
      tcp      = "127.0.0.1:8080"
      interval = "10s"
      timeout  = "2s"
    },
  ]
}
