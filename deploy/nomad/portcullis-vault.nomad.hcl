# A service fronted by Portcullis, with certificates from Vault PKI.
#
#   clients --mTLS--> [ portcullis :8443 ] --plaintext, loopback--> [ app 127.0.0.1:8080 ]
#                      admin :9901 (/readyz, /metrics, /mode)
#
# - Bridge networking: both tasks share one network namespace. The app listens on loopback
#   only, so nothing outside the allocation reaches it except through Portcullis.
# - Portcullis is a prestart sidecar. It authenticates to Vault itself with the task's
#   workload identity (a JWT Nomad writes to secrets/vault.jwt and keeps fresh) through
#   Vault's JWT auth method, signs a CSR at pki_int/sign/<role>, keeps the key in memory and
#   renews at 2/3 of the certificate's lifetime.
# - Client authentication mode (permissive or strict) and the admin token come from one
#   Nomad variable; changing it re-renders the config and sends SIGHUP (see ROLLOUT.md).
#
# Requirements: Nomad >= 1.7 with Consul and the Nomad JWKS endpoint reachable from Vault
# (the Vault side is described in deploy/README.md, "Vault for the Nomad job"); Docker.
#
# Before the first run (the template blocks until this variable exists, on purpose: a typo
# in the path must not fall back silently to a default mode):
#   nomad var put nomad/jobs/payments/payments/portcullis \
#     mode=permissive admin_token="$(openssl rand -hex 32)"
#
# To adapt: replace the job/group/service name `payments` everywhere (job names cannot be
# variables), set the variables below, and the app task's image and health command.
#
# Not run here: no Nomad binary on the build machine. deploy/nomad/check.sh parses this file
# as HCL2 and checks the embedded Portcullis configuration with `portcullis check`.

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

variable "portcullis_image" {
  type        = string
  description = "Container image with the portcullis binary at /usr/local/bin/portcullis."
  default     = "registry.example.internal/portcullis:0.1.0"
}

variable "app_image" {
  type    = string
  default = "registry.example.internal/payments:1.0.0"
}

variable "vault_addr" {
  type    = string
  default = "https://vault.service.consul:8200"
}

variable "vault_jwt_mount" {
  type        = string
  description = "Mount path of Vault's JWT auth method that trusts Nomad's JWKS."
  default     = "jwt-nomad"
}

variable "vault_jwt_role" {
  type        = string
  description = "Vault JWT role bound to nomad_job_id=payments, nomad_task=portcullis."
  default     = "portcullis-payments"
}

variable "pki_mount" {
  type    = string
  default = "pki_int"
}

variable "pki_role" {
  type        = string
  description = "Vault PKI role allowed to sign this service's names and SPIFFE URI."
  default     = "payments"
}

variable "trust_domain" {
  type    = string
  default = "example.internal"
}

variable "cert_ttl" {
  type        = string
  description = "Requested lifetime; Vault caps it at the role's max_ttl."
  default     = "24h"
}

variable "allowed_spiffe_ids" {
  type        = list(string)
  description = "Clients strict mode lets through (exact SPIFFE IDs)."
  default = [
    "spiffe://example.internal/ns/default/svc/frontend",
    "spiffe://example.internal/ns/default/svc/billing-worker",
  ]
}

job "payments" {
  datacenters = var.datacenters
  type        = "service"

  # Rolling deploys: one allocation at a time, healthy = every Consul check passing (the
  # Portcullis /readyz check included) for min_healthy_time. A canary is placed first and
  # promoted automatically once healthy; a deployment that never gets healthy is reverted.
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

      # The mTLS port clients use; Consul advertises it as the service port.
      port "mtls" {
        to = 8443
      }
      # Admin API: Consul health checks and Prometheus reach it from the host. GET endpoints
      # are open; PUT /mode, POST /reload and POST /rotate need the admin token.
      port "admin" {
        to = 9901
      }
    }

    # Deregister from Consul, then wait before stopping tasks, so that clients stop picking
    # this instance before its connections are drained.
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
      tags     = ["portcullis", "mtls"]

      meta {
        # Read by the Prometheus Consul service discovery in deploy/monitoring/prometheus.yml.
        portcullis_admin_port = "${NOMAD_HOST_PORT_admin}"
        alloc_id              = "${NOMAD_ALLOC_ID}"
      }

      # Traffic gate: ready only while Portcullis serves a valid certificate. Until it
      # passes, Consul (DNS, catalog, health queries) does not hand out this instance.
      check {
        name     = "portcullis-ready"
        type     = "http"
        port     = "admin"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }

      # Liveness of the proxy process: restarts the sidecar (not the app) when it hangs.
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

      # The app's own readiness, checked inside its task because it listens on loopback only.
      # Adapt the command to the app's image (it needs wget, curl or the app's own probe).
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

    # ------------------------------------------------------------------------------------
    task "portcullis" {
      driver = "docker"

      # Starts before the app and keeps running beside it; stops after it. A sidecar does
      # not gate the app's start: readiness is the portcullis-ready check above.
      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image      = var.portcullis_image
        entrypoint = ["/usr/local/bin/portcullis"]
        args       = ["run", "--config", "/local/portcullis.toml"]
        # No `ports` here: in bridge mode the group's network block maps them.
      }

      # Workload identity for Vault. Portcullis logs in with it at auth/<mount>/login and
      # re-reads the file at each login; Nomad renews it at half its TTL, so no signal is
      # needed. The name must not be vault_<cluster>: that name is reserved for Nomad's own
      # Vault token flow, which this task does not use (it has no vault block).
      identity {
        name        = "portcullis_vault"
        aud         = ["vault.io"]
        ttl         = "1h"
        file        = true
        filepath    = "secrets/vault.jwt"
        change_mode = "noop"
      }

      # Admin token for the mutating endpoints, readable by this task only. Portcullis reads
      # it at start, so a new token applies at the next restart of this task (noop here: a
      # restart would cut the connections it carries).
      template {
        destination = "secrets/admin-token"
        perms       = "0400"
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/payments/payments/portcullis" }}{{ .admin_token }}{{ end -}}
        EOT
      }

      # The Portcullis configuration. ${...} is filled in by Nomad when the job is parsed
      # (job variables); {{ ... }} when the template is rendered on the client. A change of
      # the Nomad variable (mode) re-renders the file and sends SIGHUP: Portcullis applies
      # [auth] (mode, allow-list) without dropping connections, or refuses the file whole
      # and keeps the old one (portcullis_config_reloads_total{result="refused"}). Other
      # sections need a restart, which a job update does anyway (new allocations).
      template {
        destination   = "local/portcullis.toml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-PORTCULLIS_TOML
          # Rendered by Nomad from deploy/nomad/portcullis-vault.nomad.hcl. Do not edit here.

          [admin]
          # Inside the allocation's network namespace; Nomad maps it to the host's admin port.
          listen = "0.0.0.0:9901"
          token_file = "{{ env "NOMAD_SECRETS_DIR" }}/admin-token"

          [log]
          format = "json"

          [auth]
          {{- with nomadVar "nomad/jobs/payments/payments/portcullis" }}
          mode = "{{ .mode }}"
          {{- end }}

          [auth.allow]
          spiffe_ids = ${jsonencode(var.allowed_spiffe_ids)}

          [identity]
          # Every certificate from Vault must carry this ID, or it is refused and not served.
          spiffe_id = "spiffe://${var.trust_domain}/ns/default/svc/payments"

          [source]
          kind = "vault"
          address = "${var.vault_addr}"
          mount = "${var.pki_mount}"
          role = "${var.pki_role}"
          method = "sign"
          common_name = "payments.service.consul"
          dns_names = ["payments.service.consul"]
          uri_sans = ["spiffe://${var.trust_domain}/ns/default/svc/payments"]
          ttl = "${var.cert_ttl}"

          [source.auth]
          method = "jwt"
          mount = "${var.vault_jwt_mount}"
          role = "${var.vault_jwt_role}"
          jwt_file = "{{ env "NOMAD_SECRETS_DIR" }}/vault.jwt"

          # When Vault's certificate is not signed by a CA in the image's system roots:
          # [source.tls]
          # ca_file = "{{ env "NOMAD_TASK_DIR" }}/vault-ca.pem"

          # When to renew (these are the defaults: 2/3 of the lifetime, +-5 % jitter).
          [source.renew]
          fraction = 0.6667
          jitter = 0.05

          # Last-known-good certificate, for a restart while Vault is unreachable. The secrets
          # directory is memory-backed and survives task restarts within the allocation; the
          # key never touches the node's disk. Written after each renewal (0700 directory,
          # 0600 files); a torn or mismatched cache is ignored, never served.
          [cache]
          dir = "{{ env "NOMAD_SECRETS_DIR" }}/portcullis-cache"

          [shutdown]
          # Keep below the task's kill_timeout (35s): SIGKILL comes after that.
          drain_timeout = "20s"

          [[listener]]
          name = "mtls"
          listen = "0.0.0.0:8443"
          upstream = "127.0.0.1:8080"
          protocol = "http"
          # ~27 KiB per idle mTLS connection: 4096 connections fit well within memory_max.
          max_connections = 4096
          handshake_timeout = "10s"
          connect_timeout = "2s"
          idle_timeout = "300s"
        PORTCULLIS_TOML
      }

      # SIGTERM: stop accepting, drain up to drain_timeout, exit 0.
      kill_signal  = "SIGTERM"
      kill_timeout = "35s"

      resources {
        cpu        = 200 # MHz; one full handshake costs ~0.3-0.5 ms of CPU
        memory     = 128 # MiB
        memory_max = 256 # needs memory oversubscription enabled; ignored otherwise
      }
    }

    # ------------------------------------------------------------------------------------
    task "app" {
      driver = "docker"

      config {
        image = var.app_image
        # The app must bind 127.0.0.1:8080 (loopback of the shared namespace), never 0.0.0.0.
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
