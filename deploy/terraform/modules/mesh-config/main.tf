# Renders every part's TOML config from one set of variables: the files are exactly what
# `tradewind core|edge|router --config` reads. It needs no provider: each deployment target
# (examples/local here, a cloud's hosts elsewhere) writes the files where its parts run.

terraform {
  required_version = ">= 1.5"
}

locals {
  common = {
    regions     = var.regions
    ports       = var.ports
    secrets_dir = var.secrets_dir
    data_dir    = var.data_dir
    residency   = var.residency
    routes      = var.routes
    keys_dir    = var.keys_dir
    cdn         = var.cdn
    tokens      = var.admin_token_sha256
  }

  cores = {
    for i, r in var.regions : r.name => templatefile("${path.module}/templates/core.toml.tftpl", merge(local.common, {
      region = r
      id     = coalesce(r.node_id, i + 1)
      timing = var.timing
    }))
  }

  edges = merge([
    for r in var.regions : {
      for e in r.edges : e.name => templatefile("${path.module}/templates/edge.toml.tftpl", merge(local.common, {
        region   = r
        edge     = e
        shoppers = var.shoppers
      }))
    }
  ]...)

  # Each region's cache, when the deployment has them.
  caches = var.cdn == null ? {} : {
    for r in var.regions : "${r.name}-cdn" => templatefile("${path.module}/templates/cdn.toml.tftpl", merge(local.common, {
      region = r
    }))
  }

  router = templatefile("${path.module}/templates/router.toml.tftpl", merge(local.common, {
    zone           = var.zone
    router_address = var.router_address
    nameservers    = var.nameservers
  }))
}
