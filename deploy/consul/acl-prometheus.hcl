# Consul ACL policy for Prometheus's Consul service discovery (deploy/monitoring/
# prometheus.yml): read the catalog to find every Portcullis-fronted service and its
# `portcullis_admin_port` meta. Nothing else.
#
#   consul acl policy create -name prometheus-sd -rules @acl-prometheus.hcl
#   consul acl token create -description "prometheus service discovery" -policy-name prometheus-sd

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
