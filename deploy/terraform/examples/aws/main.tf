# Three regions of the mesh on AWS, one provider per region: each region's hosts, disks,
# firewalls and load balancer from modules/aws-region, every config from modules/mesh-config
# (the same module the local example uses), the zone delegated to the routers in Route 53.
#
# What it needs that it does not make: in each region a VPC whose hosts' subnet reaches the
# other regions' privately (peering or a transit gateway) and the internet; public subnets
# for the load balancer; each host's secret in Secrets Manager (bundle.sh); the parent zone.
# README.md, "Deploy three regions", step by step. Cloud providers cannot be fetched where
# this repository is tested: this example is parsed and its references checked
# (tradewind/tests/terraform.rs), its hosts' files rendered and checked
# (modules/host-config), never applied there.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

# Route 53 is global: the delegation is written through the first region's endpoint.
provider "aws" {
  region = var.regions[0].aws_region
}

# A module gets its provider by name, not by an expression: one block per region.
provider "aws" {
  alias  = "r0"
  region = var.regions[0].aws_region
}

provider "aws" {
  alias  = "r1"
  region = var.regions[1].aws_region
}

provider "aws" {
  alias  = "r2"
  region = var.regions[2].aws_region
}

locals {
  cdn = var.purge_token_sha256 != null
  # Each region's public addresses, one per load balancer subnet: the storefront's and DNS's
  # ("front"), and the cache's ("cdn") when the mesh has caches.
  addresses = [for r in var.regions : {
    for p in setproduct(r.lb_subnet_ids, local.cdn ? ["front", "cdn"] : ["front"]) :
    "${p[0]} ${p[1]}" => { subnet = p[0], use = p[1] }
  }]
}

# Each region's public addresses, made before the load balancers so that the router's config
# and the zone can name them.
resource "aws_eip" "r0" {
  provider = aws.r0
  for_each = local.addresses[0]
  domain   = "vpc"
  tags     = { Name = "tradewind-${var.regions[0].name}-${each.value.use}" }
}

resource "aws_eip" "r1" {
  provider = aws.r1
  for_each = local.addresses[1]
  domain   = "vpc"
  tags     = { Name = "tradewind-${var.regions[1].name}-${each.value.use}" }
}

resource "aws_eip" "r2" {
  provider = aws.r2
  for_each = local.addresses[2]
  domain   = "vpc"
  tags     = { Name = "tradewind-${var.regions[2].name}-${each.value.use}" }
}

locals {
  eips       = [aws_eip.r0, aws_eip.r1, aws_eip.r2]
  public     = [for i, r in var.regions : [for s in r.lb_subnet_ids : local.eips[i]["${s} front"].public_ip]]
  cdn_public = [for i, r in var.regions : local.cdn ? [for s in r.lb_subnet_ids : local.eips[i]["${s} cdn"].public_ip] : null]
  # Every region's hosts: what the firewalls let in and the drills cut.
  hosts = { for r in var.regions : r.name => concat([r.address], [for e in r.edges : e.address]) }
}

module "config" {
  source = "../../modules/mesh-config"

  regions = [for i, r in var.regions : {
    name      = r.name
    address   = r.address
    latitude  = r.latitude
    longitude = r.longitude
    countries = r.countries
    fallback  = r.fallback
    # Shoppers reach every edge of a region at its load balancer, its cache at another.
    edges                = [for e in r.edges : { name = e.name, address = e.address, public_addresses = local.public[i] }]
    cdn_public_addresses = local.cdn_public[i]
  }]
  ports = var.ports
  # A router beside every core, behind its region's load balancer.
  router_address = "0.0.0.0"
  nameservers    = [for i, r in var.regions : { name = "ns-${r.name}", addresses = local.public[i] }]
  zone           = var.zone
  # The secrets in memory (fetched at boot), the keys an erasure destroys on the data disk.
  secrets_dir        = "/run/tradewind/secrets"
  keys_dir           = "/var/lib/tradewind/keys"
  data_dir           = "/var/lib/tradewind"
  admin_token_sha256 = [var.admin_token_sha256]
  shoppers           = merge(var.shoppers, { jwks_file = "/run/tradewind/secrets/shoppers.jwks.json" })
  residency          = var.residency
  cdn = local.cdn ? {
    asset_origin       = var.asset_origin
    purge_token_sha256 = var.purge_token_sha256
    purge_token_file   = "/run/tradewind/secrets/purge-token"
  } : null
}

module "region0" {
  source    = "../../modules/aws-region"
  providers = { aws = aws.r0 }

  region    = { name = var.regions[0].name, address = var.regions[0].address, edges = var.regions[0].edges }
  subnet_id = var.regions[0].subnet_id
  lb_subnets = [for s in var.regions[0].lb_subnet_ids : {
    subnet_id         = s
    allocation_id     = aws_eip.r0["${s} front"].allocation_id
    cdn_allocation_id = local.cdn ? aws_eip.r0["${s} cdn"].allocation_id : null
  }]
  parts       = module.config.parts
  host_parts  = module.config.hosts
  paths       = module.config.paths
  hosts       = local.hosts
  binary      = var.binary
  secrets     = var.secrets
  ops         = var.ops
  admin_cidrs = var.admin_cidrs
  ops_cidrs   = var.ops_cidrs
  ports       = var.ports
}

module "region1" {
  source    = "../../modules/aws-region"
  providers = { aws = aws.r1 }

  region    = { name = var.regions[1].name, address = var.regions[1].address, edges = var.regions[1].edges }
  subnet_id = var.regions[1].subnet_id
  lb_subnets = [for s in var.regions[1].lb_subnet_ids : {
    subnet_id         = s
    allocation_id     = aws_eip.r1["${s} front"].allocation_id
    cdn_allocation_id = local.cdn ? aws_eip.r1["${s} cdn"].allocation_id : null
  }]
  parts       = module.config.parts
  host_parts  = module.config.hosts
  paths       = module.config.paths
  hosts       = local.hosts
  binary      = var.binary
  secrets     = var.secrets
  ops         = var.ops
  admin_cidrs = var.admin_cidrs
  ops_cidrs   = var.ops_cidrs
  ports       = var.ports
}

module "region2" {
  source    = "../../modules/aws-region"
  providers = { aws = aws.r2 }

  region    = { name = var.regions[2].name, address = var.regions[2].address, edges = var.regions[2].edges }
  subnet_id = var.regions[2].subnet_id
  lb_subnets = [for s in var.regions[2].lb_subnet_ids : {
    subnet_id         = s
    allocation_id     = aws_eip.r2["${s} front"].allocation_id
    cdn_allocation_id = local.cdn ? aws_eip.r2["${s} cdn"].allocation_id : null
  }]
  parts       = module.config.parts
  host_parts  = module.config.hosts
  paths       = module.config.paths
  hosts       = local.hosts
  binary      = var.binary
  secrets     = var.secrets
  ops         = var.ops
  admin_cidrs = var.admin_cidrs
  ops_cidrs   = var.ops_cidrs
  ports       = var.ports
}

# The zone delegated to the routers: ns-REGION.ZONE for each, with its glue.
resource "aws_route53_record" "delegation" {
  zone_id = var.parent_zone_id
  name    = var.zone
  type    = "NS"
  ttl     = 3600
  records = [for r in var.regions : "ns-${r.name}.${var.zone}."]
}

resource "aws_route53_record" "glue" {
  for_each = { for i, r in var.regions : r.name => i }
  zone_id  = var.parent_zone_id
  name     = "ns-${each.key}.${var.zone}"
  type     = "A"
  ttl      = 3600
  records  = local.public[each.value]
}
