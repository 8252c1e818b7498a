# What scripts/terraform.sh checks of modules/host-config without a cloud: the hosts of a
# three-region mesh configured as examples/aws configures them (the same two modules, the
# same paths), with addresses on this machine's test namespaces (check/link-check.sh).

terraform {
  required_version = ">= 1.5"
}

locals {
  regions = [
    { name = "cn-shanghai", address = "10.99.0.1", edge = "10.99.1.1", latitude = 31.23, longitude = 121.47, countries = ["CN"] },
    { name = "ap-singapore", address = "10.99.2.1", edge = "10.99.2.2", latitude = 1.35, longitude = 103.82, countries = ["SG"] },
    { name = "us-east", address = "10.99.0.2", edge = "10.99.0.3", latitude = 38.9, longitude = -77.04, countries = ["US"] },
  ]
  hosts = { for r in local.regions : r.name => [r.address, r.edge] }
  parts = module.config.parts
}

module "config" {
  source = "../../mesh-config"

  regions = [for r in local.regions : {
    name      = r.name
    address   = r.address
    latitude  = r.latitude
    longitude = r.longitude
    countries = r.countries
    edges     = [{ name = "${r.name}-1", address = r.edge, public_addresses = ["192.0.2.1"] }]
    # A cache beside the core, reached at its own load balancer.
    cdn_public_addresses = ["192.0.2.2"]
  }]
  router_address     = "0.0.0.0"
  nameservers        = [for r in local.regions : { name = "ns-${r.name}", addresses = ["192.0.2.1"] }]
  zone               = "shop.tradewind.test"
  secrets_dir        = "/run/tradewind/secrets"
  keys_dir           = "/var/lib/tradewind/keys"
  data_dir           = "/var/lib/tradewind"
  admin_token_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]
  shoppers = {
    issuer    = "https://id.tradewind.example/"
    audience  = "tradewind-storefront"
    jwks_file = "/run/tradewind/secrets/shoppers.jwks.json"
  }
  residency = { homes = { CN = "cn-shanghai", SG = "ap-singapore", US = "us-east" }, suites = { cn-shanghai = "sm4-gcm" } }
  cdn = {
    asset_origin       = "https://assets.tradewind.example"
    purge_token_sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
    purge_token_file   = "/run/tradewind/secrets/purge-token"
  }
}

module "host" {
  source = "../"
  # As modules/aws-region groups them (mesh-config's hosts).
  for_each = module.config.hosts

  host        = each.key
  parts       = { for n in each.value : n => { kind = local.parts[n].kind, config = local.parts[n].config } }
  regions     = local.hosts
  binary      = { url = "https://releases.tradewind.example/tradewind", sha256 = "0000000000000000000000000000000000000000000000000000000000000000" }
  secret      = { arn = "arn:aws:secretsmanager:ap-east-1:123456789012:secret:tradewind/${each.key}", region = "ap-east-1" }
  data_device = "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
  interface   = "tw-a"
  paths       = module.config.paths
  ops         = { ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRvbid0IHVzZSB0aGlzIGtleSBhbnl3aGVyZQ ops@example"] }
}

output "hosts" {
  description = "Each host: its kind, the files its user data writes, and the user data itself."
  value = { for n, h in module.host : n => {
    kind      = contains([for r in local.regions : r.name], n) ? "core" : "edge"
    files     = h.files
    user_data = h.user_data
  } }
}

output "https_names" {
  description = "The names each listener's certificate covers (the router's: every core address)."
  value       = merge(module.config.https_names, { geo-router = [for r in local.regions : r.address] })
}
