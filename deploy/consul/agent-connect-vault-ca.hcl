# OPTIONAL. Consul agent configuration fragment for the Consul *servers*: the Connect CA is
# backed by Vault PKI instead of Consul's built-in CA. Use it instead of the ca_config in
# agent-connect.hcl. Then the leaves served by a Connect-native Portcullis chain up to a
# root that lives in Vault, and services using the Vault source (deploy/nomad/
# portcullis-vault.nomad.hcl) and Connect-native ones can trust a common root.
#
# Read only when the cluster first bootstraps its CA; to move an existing cluster, pass the
# same settings (as JSON) to `consul connect ca set-config`. Consul then cross-signs and
# rotates to the new root; Portcullis trusts every root /v1/agent/connect/ca/roots lists, so
# connections keep verifying during the overlap.
#
# Vault side (not set up by this file): two PKI mounts Consul may manage (the root one
# can also be an existing root that Consul only reads), and a token or auth method whose
# policy allows Consul to write the intermediate mount and sign intermediates with the root.

connect {
  enabled     = true
  ca_provider = "vault"

  ca_config {
    address = "https://vault.service.consul:8200"
    # CA bundle for Vault's TLS listener, and the name its certificate carries.
    ca_file         = "/etc/consul.d/tls/vault-ca.pem"
    tls_server_name = "vault.service.consul"

    root_pki_path         = "connect-root"
    intermediate_pki_path = "connect-intermediate-dc1"

    # Leaf lifetime, as with the built-in CA. The intermediate should outlive a leaf many
    # times over; Consul renews it before it expires.
    leaf_cert_ttl         = "72h"
    intermediate_cert_ttl = "8760h"
    private_key_type      = "ec"
    private_key_bits      = 256

    # How Consul logs in to Vault: a token (periodic, renewed by Consul) ...
    token = "REPLACE-WITH-A-PERIODIC-VAULT-TOKEN"

    # ... or an auth method instead of `token`, for example AppRole:
    # auth_method {
    #   type       = "approle"
    #   mount_path = "approle"
    #   params = {
    #     role_id_file_path   = "/etc/consul.d/vault/role-id"
    #     secret_id_file_path = "/etc/consul.d/vault/secret-id"
    #   }
    # }
  }
}
