# What a Portcullis instance may do in Vault/OpenBao. bootstrap-pki.sh writes this policy with
# the mount and role names replaced by the ones it was given (defaults: pki_int and web).

# Sign a CSR made by Portcullis (method = "sign", the default: the key never leaves it).
path "pki_int/sign/web" {
  capabilities = ["create", "update"]
}

# Let Vault make the key (method = "issue"); drop this block if every instance signs.
path "pki_int/issue/web" {
  capabilities = ["create", "update"]
}

# The trust bundle is every issuer of the mount. LIST is unauthenticated on current servers;
# older ones want this capability. Each issuer's certificate is read unauthenticated.
path "pki_int/issuers" {
  capabilities = ["list"]
}

# Token renewal (auth/token/renew-self) and lookup (auth/token/lookup-self) come with
# Vault's built-in `default` policy, which every token also carries.
