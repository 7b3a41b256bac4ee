# Consul agent configuration fragment (servers and clients): service mesh on, with Consul's
# built-in CA. Drop it into the agent's config directory (e.g. /etc/consul.d/) next to the
# rest of your configuration.
#
# Portcullis needs this only for the Connect-native variant (deploy/nomad/
# portcullis-connect-native.nomad.hcl), where it serves the leaf certificate the local agent
# issues for the service. The Vault-sourced job needs nothing from Connect: Consul is only
# its service catalog and health checker there.

connect {
  enabled = true

  # Read only when the cluster first bootstraps its CA; change it later with
  # `consul connect ca set-config`.
  ca_config {
    # Lifetime of service leaf certificates. Each agent renews a leaf at a random point
    # between 60 % and 90 % of its lifetime, and at once after a CA root change; Portcullis
    # picks the new one up through a blocking query and publishes it after validation.
    leaf_cert_ttl = "72h"
    # RSA or EC keys for the CA and the leaves: EC P-256 keeps handshakes cheap.
    private_key_type = "ec"
    private_key_bits = 256
  }
}

acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}

# The agent HTTP API is what a Connect-native task talks to (leaf, roots, authorize). Keep
# it on loopback (and the Nomad client's socket for bridge-mode tasks); put TLS on it with
# the `tls` block and the `https` port if anything non-local must reach it.
addresses {
  http = "127.0.0.1"
}
