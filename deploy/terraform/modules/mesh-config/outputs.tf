output "parts" {
  description = "Every part of the mesh by name: its kind (core, edge, cdn or router), its region (none for the router), its config file's text, and the URL that answers once it is up."
  value = merge(
    { for i, r in var.regions : r.name => {
      kind       = "core"
      region     = r.name
      config     = local.cores[r.name]
      health_url = "https://${r.address}:${var.ports.admin}/healthz"
    } },
    merge([for r in var.regions : { for e in r.edges : e.name => {
      kind       = "edge"
      region     = r.name
      config     = local.edges[e.name]
      health_url = "https://${e.address}:${var.ports.edge}/healthz"
    } }]...),
    { for r in var.regions : "${r.name}-cdn" => {
      kind       = "cdn"
      region     = r.name
      config     = local.caches["${r.name}-cdn"]
      health_url = "https://${r.address}:${var.ports.cdn_admin}/healthz"
    } if var.cdn != null },
    { geo-router = {
      kind       = "router"
      region     = null
      config     = local.router
      health_url = "https://${var.router_address}:${var.ports.router_http}/v1/health"
    } },
  )

  precondition {
    # One digest, two tokens: a cache could not tell which scopes the token has.
    condition     = var.cdn == null || !contains(var.admin_token_sha256, try(var.cdn.purge_token_sha256, ""))
    error_message = "The edges' purge token must be another token than the admin token."
  }
}

output "paths" {
  description = "Where every part finds its secrets, keeps its data (under a directory named after it) and its keys: what a deployment on hosts lays out (modules/host-config checks them)."
  value = {
    secrets_dir = var.secrets_dir
    data_dir    = var.data_dir
    keys_dir    = var.keys_dir == null ? "${var.secrets_dir}/keys" : var.keys_dir
  }
}

output "hosts" {
  description = "How a deployment on hosts groups the parts (modules/aws-region, modules/host-config/check): each region's core host, named after the region, runs its core, a geo-router and the region's cache; each edge has a host of its own."
  value = merge(
    { for r in var.regions : r.name => concat([r.name, "geo-router"], var.cdn == null ? [] : ["${r.name}-cdn"]) },
    merge([for r in var.regions : { for e in r.edges : e.name => [e.name] }]...),
  )
}

output "https_names" {
  description = "For each part's HTTPS listener, every name clients reach it by (what its certificate must cover): a core's admin API its address; an edge its address and the zone's storefront names; a region's cache those and the asset names; the router's API its address."
  value = merge(
    { for r in var.regions : r.name => [r.address] },
    merge([for r in var.regions : { for e in r.edges : e.name => [e.address, var.zone, "www.${var.zone}"] }]...),
    # A cache stands in front of the storefront and answers for the asset names too.
    { for r in var.regions : "${r.name}-cdn" => concat(
      [r.address, var.zone, "www.${var.zone}"], [for n in var.cdn.asset_names : "${n}.${var.zone}"]
    ) if var.cdn != null },
    { geo-router = [var.router_address] },
  )
}

output "mesh" {
  description = "The mesh as `tradewind status --mesh` reads it (the admin token is not in it: add admin_token_file)."
  value = {
    regions = [for r in var.regions : {
      name  = r.name
      core  = { admin_url = "https://${r.address}:${var.ports.admin}", quic = "${r.address}:${var.ports.raft}" }
      edges = [for e in r.edges : { name = e.name, url = "https://${e.address}:${var.ports.edge}" }]
      cdn = var.cdn == null ? null : {
        url       = "https://${r.address}:${var.ports.cdn}"
        admin_url = "https://${r.address}:${var.ports.cdn_admin}"
      }
    }]
    assets = var.cdn == null ? null : (var.cdn.asset_origin == null ? null : { url = var.cdn.asset_origin })
    ca     = "${var.secrets_dir}/ca.pem"
    router = {
      dns  = "${var.router_address}:${var.ports.dns}"
      http = "https://${var.router_address}:${var.ports.router_http}"
      zone = var.zone
    }
  }
}
