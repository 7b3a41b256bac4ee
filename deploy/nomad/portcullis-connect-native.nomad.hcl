# PROVISIONAL: needs Portcullis's Consul Connect source (`[source] kind = "consul"`), which
# does not exist yet. `portcullis check` refuses the embedded configuration until it lands;
# deploy/nomad/check.sh reports that as expected. The Nomad and Consul side below is what
# that source will need; the [source] keys will be fixed to the real ones when it lands.
#
# The same service as portcullis-vault.nomad.hcl, but the identity comes from Consul's
# Connect CA (which may itself be backed by Vault, see deploy/consul/agent-connect-vault-ca.hcl):
#
#   - the service is registered as Connect native (`connect { native = true }`), so Consul
#     Connect clients and Envoy sidecars elsewhere in the mesh can dial it directly;
#   - Nomad gives the native task the Consul agent's address and credentials in its
#     environment: CONSUL_HTTP_ADDR (in bridge mode a unix socket in the allocation directory),
#     CONSUL_HTTP_TOKEN (the service identity token, when Consul ACLs are on),
#     CONSUL_CACERT / CONSUL_CLIENT_CERT / CONSUL_CLIENT_KEY (when the Nomad client shares its
#     Consul TLS settings);
#   - the source would fetch the leaf with GET /v1/agent/connect/ca/leaf/payments and the
#     roots with GET /v1/agent/connect/ca/roots (blocking queries), and trust every root
#     listed, so a Connect CA rotation is seamless;
#   - the token needs service:write on `payments` (deploy/consul/acl-portcullis-payments.hcl).
#
# Differences from the Vault job: no Vault identity, no Vault variables; a `consul_default`
# workload identity and a service identity instead. Everything else (update, checks, restart,
# readiness, shutdown) is the same and is explained in portcullis-vault.nomad.hcl.

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "portcullis_image" {
  type    = string
  default = "registry.example.internal/portcullis:0.1.0"
}

variable "app_image" {
  type    = string
  default = "registry.example.internal/payments:1.0.0"
}

variable "consul_trust_domain" {
  type        = string
  description = "The Connect CA trust domain: `curl -s $CONSUL_HTTP_ADDR/v1/agent/connect/ca/roots | jq -r .TrustDomain`."
  default     = "11111111-2222-3333-4444-555555555555.consul"
}

variable "allowed_spiffe_ids" {
  type        = list(string)
  description = "Connect identities strict mode lets through: spiffe://<trust domain>/ns/<ns>/dc/<dc>/svc/<service>."
  default = [
    "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/frontend",
    "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/billing-worker",
  ]
}

job "payments" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel      = 1
    canary            = 1
    auto_promote      = true
    auto_revert       = true
    health_check      = "checks"
    min_healthy_time  = "30s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
  }

  group "payments" {
    count = 3

    network {
      mode = "bridge"

      port "mtls" {
        to = 8443
      }
      port "admin" {
        to = 9901
      }
    }

    shutdown_delay = "10s"

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    service {
      name     = "payments"
      port     = "mtls"
      provider = "consul"
      # A Connect-native service names the task that implements it: Nomad gives that task the
      # CONSUL_* environment and the service's identity token.
      task = "portcullis"
      tags = ["portcullis", "mtls", "connect-native"]

      connect {
        native = true
      }

      # Nomad >= 1.7 workload identity for the service: exchanged at Consul's JWT auth method
      # (set up with `nomad setup consul`) for a token with this service's identity.
      identity {
        aud = ["consul.io"]
        ttl = "1h"
      }

      meta {
        portcullis_admin_port = "${NOMAD_HOST_PORT_admin}"
        alloc_id              = "${NOMAD_ALLOC_ID}"
      }

      check {
        name     = "portcullis-ready"
        type     = "http"
        port     = "admin"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }

      check {
        name     = "portcullis-alive"
        type     = "http"
        port     = "admin"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
        task     = "portcullis"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }

      check {
        name     = "app-ready"
        type     = "script"
        task     = "app"
        command  = "/bin/sh"
        args     = ["-c", "wget -q -O /dev/null http://127.0.0.1:8080/health"]
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "portcullis" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image      = var.portcullis_image
        entrypoint = ["/usr/local/bin/portcullis"]
        args       = ["run", "--config", "/local/portcullis.toml"]
      }

      # Task identity for Consul (templates reading Consul, and the task's own Consul token).
      identity {
        name = "consul_default"
        aud  = ["consul.io"]
        ttl  = "1h"
      }

      template {
        destination = "secrets/admin-token"
        perms       = "0400"
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/payments/payments/portcullis" }}{{ .admin_token }}{{ end -}}
        EOT
      }

      template {
        destination   = "local/portcullis.toml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-PORTCULLIS_TOML
          # provisional: consul source
          # Rendered by Nomad from deploy/nomad/portcullis-connect-native.nomad.hcl.

          [admin]
          listen = "0.0.0.0:9901"
          token_file = "{{ env "NOMAD_SECRETS_DIR" }}/admin-token"

          [log]
          format = "json"

          [auth]
          {{- with nomadVar "nomad/jobs/payments/payments/portcullis" }}
          mode = "{{ .mode }}"
          {{- end }}

          [auth.allow]
          # Connect certificates carry spiffe://<trust domain>/ns/<ns>/dc/<dc>/svc/<service>:
          # the datacenter is part of the ID, so list a client once per datacenter it runs in.
          # (Authorizing by Consul intentions, POST /v1/agent/connect/authorize, belongs to the
          # Consul source's design and is not assumed here.)
          spiffe_ids = ${jsonencode(var.allowed_spiffe_ids)}

          [identity]
          spiffe_id = "spiffe://${var.consul_trust_domain}/ns/default/dc/dc1/svc/payments"

          [source]
          kind = "consul"
          # The Consul service whose leaf certificate is served.
          service = "payments"
          # Address, token and TLS come from CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
          # CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY, as Nomad sets them.

          [cache]
          dir = "{{ env "NOMAD_SECRETS_DIR" }}/portcullis-cache"

          [shutdown]
          drain_timeout = "20s"

          [[listener]]
          name = "mtls"
          listen = "0.0.0.0:8443"
          upstream = "127.0.0.1:8080"
          protocol = "http"
          max_connections = 4096
        PORTCULLIS_TOML
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "35s"

      resources {
        cpu        = 200
        memory     = 128
        memory_max = 256
      }
    }

    task "app" {
      driver = "docker"

      config {
        image = var.app_image
      }

      env {
        LISTEN_ADDR = "127.0.0.1:8080"
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
